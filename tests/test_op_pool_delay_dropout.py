import numpy as np
import pytest

import reference as ref
from pysrm import SpikeEvents
from pysrm.functional import delay, delay_backward, dropout, dropout_backward, dropout_mask, pool, pool_backward
from pysrm.gradcheck import check_delay, check_dropout, check_pool


@pytest.mark.parametrize("shape,k", [((2, 3, 6, 4, 5), 2), ((1, 2, 5, 7, 4), 2), ((1, 2, 9, 8, 3), 4)])
def test_pool_matches_reference(shape, k):
    rng = np.random.default_rng(5)
    x = np.where(rng.random(shape) < 0.04, 1.0, 0.0)
    expected = ref.pool(x, k, 11.0)
    plain = pool(x, k, 11.0, strategy="plain")
    np.testing.assert_allclose(plain, expected, rtol=1e-12)
    for strategy, inp in (("event", x), ("event", SpikeEvents.from_dense(x)), ("auto", x), ("plain", SpikeEvents.from_dense(x))):
        np.testing.assert_array_equal(pool(inp, k, 11.0, strategy=strategy), plain)  # same terms, same order
    g = rng.normal(size=expected.shape)
    gx = pool_backward(g, x.shape, k, 11.0)
    assert gx.shape == x.shape
    assert np.sum(expected * g) == pytest.approx(np.sum(x * gx))


def test_pool_delay_dropout_finite_differences():
    rng = np.random.default_rng(0)
    for strategy in ("plain", "event"):
        for r in check_pool(rng, strategy) + check_delay(rng, strategy):
            assert r.passed, r
    for r in check_dropout(rng):
        assert r.passed, r


@pytest.mark.parametrize("dshape", [(3, 2, 2), (3, 1, 1), ()])
def test_delay_matches_reference(dshape):
    rng = np.random.default_rng(6)
    x = rng.normal(size=(2, 3, 2, 2, 10))
    d = rng.uniform(0, 4, size=dshape)
    np.testing.assert_allclose(delay(x, d, 0.5), ref.delay(x, d, 0.5), rtol=1e-12, atol=1e-12)
    gx, gd = delay_backward(rng.normal(size=x.shape), x, d, 0.5)
    assert gd.shape == np.shape(d) and gx.shape == x.shape


def test_integer_delay_is_a_pure_shift():
    x = np.zeros((1, 1, 1, 1, 8))
    x[..., 2] = 1.0
    y = delay(x, np.array([[[3.0]]]), 1.0)
    assert np.flatnonzero(y[0, 0, 0, 0]).tolist() == [5]
    with pytest.raises(ValueError, match=">= 0"):
        delay(x, np.array([[[-1.0]]]), 1.0)
    with pytest.raises(ValueError, match="does not broadcast"):
        delay(x, np.zeros((2, 2, 2)), 1.0)


def test_dropout_mask_per_neuron():
    rng = np.random.default_rng(0)
    x = np.ones((4, 5, 3, 3, 7))
    m = dropout_mask(x.shape, 0.5, rng, np.float64)
    assert m.shape == x.shape[:-1] and set(np.unique(m)) <= {0.0, 2.0}
    y = dropout(x, m)
    # a dropped neuron is silent in every time bin
    assert np.all((y == 0).all(axis=-1) | (y == 2).all(axis=-1))
    np.testing.assert_array_equal(dropout_backward(x, m), y)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        dropout_mask(x.shape, 1.0, rng)


@pytest.mark.parametrize("bins", [0.0, 0.5, 1.0, 8.5, 9.0, 9.5, 10.0, 12.25])
def test_delay_edges_of_the_time_axis(bins):
    # delays around and beyond the sample length T = 10 bins (the kernels split the time loop there)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 1, 1, 10))
    d = np.full((3, 1, 1), bins * 0.5)
    y = delay(x, d, 0.5)
    np.testing.assert_allclose(y, ref.delay(x, d, 0.5), rtol=1e-12, atol=1e-12)
    g = rng.normal(size=x.shape)
    gx, gd = delay_backward(g, x, d, 0.5)
    assert np.isclose(np.sum(y * g), np.sum(x * gx), rtol=1e-12, atol=1e-12)  # grad_x is the adjoint
    if bins % 1.0:  # away from the kinks at integer bins: central finite difference on d
        h = 1e-6
        fd = (np.sum(delay(x, d + h, 0.5) * g) - np.sum(delay(x, d - h, 0.5) * g)) / (2 * h)
        assert np.isclose(gd.sum(), fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("dshape", [(6, 1, 1), (1, 1, 1)])
def test_delay_backward_from_dense_equals_the_two_backwards(dshape, dtype):
    """The dense input gradient made row by row inside the delay backward equals dense_backward then
    delay_backward to float rounding, including delays at and beyond the end of the time axis."""
    from pysrm.functional import delay_backward, delay_backward_from_dense
    rng = np.random.default_rng(11)
    T = 12
    x = (rng.random((3, 6, 1, 1, T)) < 0.3).astype(dtype)
    d = rng.uniform(0.0, 4.0, size=dshape).astype(dtype)
    if dshape[0] == 6:
        d[0, 0, 0], d[1, 0, 0] = 11.5, 14.0
    w = rng.normal(size=(5, 6)).astype(dtype)
    gy = rng.normal(size=(3, 5, 1, 1, T)).astype(dtype)
    gx_dense = np.matmul(w.T, gy.reshape(3, 5, T)).reshape(x.shape)
    gx_ref, gd_ref = delay_backward(gx_dense, x, d, 1.0)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    for inp in (x, SpikeEvents.from_dense(x)):  # the delay input dense or as events
        gx, gd = delay_backward_from_dense(w, gy, inp, d, 1.0)
        assert gx.dtype == gd.dtype == dtype and gd.shape == dshape
        np.testing.assert_allclose(gx, gx_ref, rtol=tol, atol=tol)
        np.testing.assert_allclose(gd, gd_ref, rtol=tol, atol=tol)
    # where the fused form does not apply (more than the setting fused_dense_max_outputs outputs) the two ops run:
    # the same numbers, never None
    w65 = rng.normal(size=(65, 6)).astype(dtype)
    gy65 = rng.normal(size=(3, 65, 1, 1, T)).astype(dtype)
    gx65, gd65 = delay_backward_from_dense(w65, gy65, x, d, 1.0)
    gx_ref65, gd_ref65 = delay_backward(np.matmul(w65.T, gy65.reshape(3, 65, T)).reshape(x.shape), x, d, 1.0)
    np.testing.assert_allclose(gx65, gx_ref65, rtol=tol, atol=tol)
    np.testing.assert_allclose(gd65, gd_ref65, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_delay_of_spike_events_is_bitwise_the_dense_delay(dtype):
    """delay_events(x) == SpikeEvents.from_dense(delay(x.to_dense())): same events, same order, same values,
    with adjacent spikes (their shifted halves meet in one bin), integer and fractional delays, delays that
    push spikes past the end, and spikes at t = 0 and t = T - 1."""
    from pysrm.functional import delay_events
    rng = np.random.default_rng(12)
    T = 15
    s = (rng.random((3, 7, 1, 1, T)) < 0.35).astype(dtype) * dtype(0.5)
    s[0, 0, 0, 0, :4] = 0.5          # a burst: every shifted bin is a sum of two halves
    s[1, 2, 0, 0, 0] = s[1, 2, 0, 0, T - 1] = 0.5
    s[2] = 0.0                       # a sample without spikes
    d = np.array([0.0, 0.5, 1.25, 3.0, 2.75, 13.6, 20.0], dtype=dtype).reshape(7, 1, 1)
    ev = SpikeEvents.from_dense(s)
    got = delay_events(ev, d, 1.0)
    ref_ev = SpikeEvents.from_dense(delay(s, d, 1.0))
    assert got.shape == ref_ev.shape and got.dtype == dtype
    for name in ("offsets", "neuron", "time", "value"):
        np.testing.assert_array_equal(getattr(got, name), getattr(ref_ev, name), err_msg=name)
    with pytest.raises(TypeError, match="SpikeEvents"):
        delay_events(s, d, 1.0)


def test_spike_events_from_spike_lists_are_sorted_by_neuron_then_time():
    nb = np.array([[2, 0, 2, 0, 1, 1], [1, 0, 0, 0, 0, 0]], dtype=np.int32)
    tb = np.array([[3, 4, 1, 0, 4, 4], [2, 0, 0, 0, 0, 0]], dtype=np.int32)
    ev = SpikeEvents.from_spike_lists((2, 3, 1, 1, 5), nb, tb, np.array([4, 1]), np.float32(2.0))
    np.testing.assert_array_equal(ev.offsets, [0, 4, 5])
    np.testing.assert_array_equal(ev.neuron, [0, 0, 2, 2, 1])
    np.testing.assert_array_equal(ev.time, [0, 4, 1, 3, 2])
    assert ev.value.dtype == np.float32 and (ev.value == 2.0).all()


def test_delay_backward_reads_an_event_input():
    """delay_backward with the delay's input as SpikeEvents: the input gradient bitwise that of the dense
    input, the delay gradient (summed by parts over the events) equal to float rounding; per neuron and
    per channel delays, delays beyond the end."""
    rng = np.random.default_rng(21)
    s = ((rng.random((3, 4, 2, 2, 25)) < 0.2) / 1.0).astype(np.float32)
    ev = SpikeEvents.from_dense(s)
    g = rng.normal(size=s.shape).astype(np.float32)
    for d in (rng.uniform(0.0, 4.0, size=(4, 2, 2)).astype(np.float32), np.array([[[0.3]], [[2.5]], [[30.0]], [[0.0]]], np.float32)):
        gx_e, gd_e = delay_backward(g, ev, d, 1.0)
        gx_d, gd_d = delay_backward(g, s, d, 1.0)
        assert gd_e.shape == d.shape and np.abs(gd_d).max() > 0
        np.testing.assert_array_equal(gx_e, gx_d)
        np.testing.assert_allclose(gd_e, gd_d, rtol=1e-5, atol=1e-5 * np.abs(gd_d).max())
