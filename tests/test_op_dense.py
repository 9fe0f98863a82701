import numpy as np
import pytest

import reference as ref
from pysrm import SpikeEvents
from pysrm.functional import dense, dense_backward
from pysrm.gradcheck import check_dense
from pysrm.workspace import Workspace


def _x(rng, shape, p=0.05, dtype=np.float64):
    return np.where(rng.random(shape) < p, 1.0, 0.0).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dense_every_strategy_matches_the_plain_loop_and_reference(dtype):
    rng = np.random.default_rng(3)
    x = _x(rng, (3, 2, 3, 4, 15), dtype=dtype)
    w = rng.normal(size=(5, 24)).astype(dtype)
    expected = ref.dense(w.astype(np.float64), x.astype(np.float64))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    g = rng.normal(size=expected.shape).astype(dtype)
    gw_ref = ref.dense_weight_grad(g.astype(np.float64), x.astype(np.float64))
    plain = dense(w, x, strategy="plain")
    gx_plain, gw_plain = dense_backward(w, x, g, strategy="plain")
    np.testing.assert_allclose(plain, expected, **tol)
    np.testing.assert_allclose(gw_plain, gw_ref, **tol)
    ev = SpikeEvents.from_dense(x)
    for strategy, inp in (("event", ev), ("event", x), ("blas", x), ("blas", ev), ("auto", ev), ("auto", x),
                          ("plain", ev)):
        np.testing.assert_allclose(dense(w, inp, strategy=strategy), plain, **tol, err_msg=strategy)
        gx, gw = dense_backward(w, inp, g, strategy=strategy)
        np.testing.assert_allclose(gw, gw_plain, **tol, err_msg=strategy)
        np.testing.assert_allclose(gx, gx_plain, **tol, err_msg=strategy)
        assert dense_backward(w, inp, g, need_input_grad=False, strategy=strategy)[0] is None
    with pytest.raises(ValueError, match="unknown strategy 'fast'.*'plain'"):
        dense(w, x, strategy="fast")


def test_dense_finite_differences():
    rng = np.random.default_rng(0)
    for strategy in ("plain", "event", "blas"):
        for r in check_dense(rng, strategy):
            assert r.passed, r


def test_dense_shape_errors():
    w = np.zeros((3, 10), dtype=np.float32)
    with pytest.raises(ValueError, match=r"expected w of shape \(outputs, 12\)"):
        dense(w, np.zeros((1, 3, 2, 2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="5 dimensions"):
        dense(w, np.zeros((1, 10, 5), dtype=np.float32))
    with pytest.raises(TypeError, match="dtype"):
        dense(w, np.zeros((1, 10, 1, 1, 5), dtype=np.float64))


def test_spike_events_roundtrip():
    rng = np.random.default_rng(1)
    x = _x(rng, (2, 2, 3, 3, 9), p=0.3, dtype=np.float32)
    ev = SpikeEvents.from_dense(x)
    np.testing.assert_array_equal(ev.to_dense(), x)
    assert ev.n_events == int((x != 0).sum())
    both = SpikeEvents.concatenate([SpikeEvents.from_dense(x[:1]), SpikeEvents.from_dense(x[1:])])
    np.testing.assert_array_equal(both.to_dense(), x)
    with pytest.raises(ValueError, match="time bins"):
        SpikeEvents((1, 1, 1, 1, 4), [0, 1], [0], [7], np.ones(1, np.float32))


def test_event_weight_gradient_does_not_depend_on_the_thread_count():
    # the partial sums of the event-driven weight gradient are split by shape, not by thread count, so
    # runs with different NUMBA_NUM_THREADS (sweeps, resumed runs) give bitwise the same parameters
    import numba
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("needs 2 Numba threads")
    rng = np.random.default_rng(3)
    x = SpikeEvents.from_dense((rng.random((13, 40, 1, 1, 50)) < 0.05).astype(np.float32))
    w = rng.normal(size=(30, 40)).astype(np.float32)
    g = rng.normal(size=(13, 30, 1, 1, 50)).astype(np.float32)
    old = numba.get_num_threads()
    try:
        results = []
        for n in (1, 2):
            numba.set_num_threads(n)
            results.append(dense_backward(w, x, g)[1])
    finally:
        numba.set_num_threads(old)
    np.testing.assert_array_equal(results[0], results[1])


def test_partial_sum_workspace_contents_never_leak_into_the_gradient():
    """The event weight gradient's partial sums are reused across steps with no zeroing pass (a row is
    zeroed where a call first touches it); what a previous or interrupted step left there must not leak
    into the next gradient."""
    from pysrm.ops import dense as D
    rng = np.random.default_rng(4)
    x = (rng.random((8, 6, 1, 1, 20)) < 0.1).astype(np.float32)
    ev = SpikeEvents.from_dense(x)
    w = rng.normal(size=(5, 6)).astype(np.float32)
    g = rng.normal(size=(8, 5, 1, 1, 20)).astype(np.float32)
    ws = Workspace()
    _, gw_ref = D.dense_backward(w, ev, g, need_input_grad=False)              # no workspace: fresh arrays
    parts, _ = D.partial_sums_workspace((D.wgrad_parts(8, w), 6, 5), w.dtype, ws)  # as if a step began...
    parts[...] = 7.0                                                               # ...and stopped midway
    _, gw = D.dense_backward(w, ev, g, need_input_grad=False, workspace=ws)
    np.testing.assert_array_equal(gw, gw_ref)
    _, gw2 = D.dense_backward(w, ev, g, need_input_grad=False, workspace=ws)   # reused workspace
    np.testing.assert_array_equal(gw2, gw_ref)
    assert ws.nbytes >= parts.nbytes


def test_spike_events_merge_duplicates_in_given_order():
    """Duplicate events (one bin twice) given to SpikeEvents are merged at construction, their values
    added in their given order (to_dense equals np.add.at, bitwise), and a sample without events stays
    zero."""
    rng = np.random.default_rng(9)
    offsets = np.array([0, 5, 5, 9])
    neuron = np.array([1, 1, 0, 2, 1, 3, 3, 0, 3], dtype=np.int32)
    time = np.array([2, 2, 0, 4, 2, 1, 1, 4, 1], dtype=np.int32)
    value = rng.normal(size=9).astype(np.float32)
    ev = SpikeEvents((3, 4, 1, 1, 5), offsets, neuron, time, value)
    ref = np.zeros((3, 4, 5), dtype=np.float32)
    np.add.at(ref, (np.repeat(np.arange(3), np.diff(offsets)), neuron, time), value)
    got = ev.to_dense()
    assert got.shape == (3, 4, 1, 1, 5) and got.dtype == np.float32
    np.testing.assert_array_equal(got.reshape(3, 4, 5), ref)
    assert not got[1].any() and got[0, 1, 0, 0, 2] == ref[0, 1, 2]
