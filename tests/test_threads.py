"""Thread safety and process-wide state (issue: engine core).

* Two Python threads calling pysrm's ops, or training two networks, get bitwise what they get one after
  the other: no op keeps work arrays or caches in a module (the work arrays belong to a network's
  Workspace or to the call).
* ``import pysrm`` changes no process-wide state: BLAS thread counts are untouched, NumPy is not
  patched; inside pysrm's compute the BLAS runs on one thread, restored afterwards.
"""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from pysrm import NeuronParams, SimParams, SpikeEvents
from pysrm import functional as F
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import Adam


@pytest.fixture
def frequent_switches():
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as Python allows
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def _run_in_threads(fns):
    """Run each ``fn()`` in its own thread at once; returns their results (re-raises their errors)."""
    results = [None] * len(fns)
    errors = []
    start = threading.Barrier(len(fns))

    def run(k):
        try:
            start.wait()
            results[k] = fns[k]()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def test_dense_weight_gradients_in_two_threads_equal_the_serial_ones(frequent_switches):
    """The issue's case: two threads, each calling dense_backward on its own inputs (x (8, 40, 1, 1, 50)
    at 5 % density, w (30, 40), g (8, 30, 1, 1, 50)); before, 1,710 of 3,000 gradients differed."""
    rng = np.random.default_rng(0)
    data = []
    for _ in range(2):
        x = (rng.random((8, 40, 1, 1, 50)) < 0.05).astype(np.float32)
        data.append((rng.normal(size=(30, 40)).astype(np.float32), SpikeEvents.from_dense(x),
                     rng.normal(size=(8, 30, 1, 1, 50)).astype(np.float32)))
    serial = [F.dense_backward(w, x, g, need_input_grad=False)[1] for w, x, g in data]
    calls = 300

    def worker(k):
        w, x, g = data[k]
        return sum(int(not np.array_equal(F.dense_backward(w, x, g, need_input_grad=False)[1], serial[k]))
                   for _ in range(calls))
    differing = _run_in_threads([lambda: worker(0), lambda: worker(1)])
    assert differing == [0, 0]


def test_conv_delay_and_fused_ops_in_two_threads_equal_the_serial_ones(frequent_switches):
    rng = np.random.default_rng(1)
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 40.0)
    eps, nu = F.srm_kernel(neuron, sim), F.refractory_kernel(neuron, sim)

    def make(k):
        r = np.random.default_rng(10 + k)
        xc = SpikeEvents.from_dense((r.random((4, 2, 9, 9, 20)) < 0.05).astype(np.float32))
        wc = r.normal(size=(3, 2, 3, 3)).astype(np.float32)
        gc = r.normal(size=(4, 3, 9, 9, 20)).astype(np.float32)
        xd = SpikeEvents.from_dense((r.random((4, 6, 1, 1, 40)) < 0.15).astype(np.float32))
        d = r.uniform(0.2, 3.7, size=(6, 1, 1)).astype(np.float32)
        gd = r.normal(size=(4, 6, 1, 1, 40)).astype(np.float32)
        wf = (r.normal(size=(64, 20)) * 3).astype(np.float32)
        xf = SpikeEvents.from_dense((r.random((4, 20, 1, 1, 40)) < 0.1).astype(np.float32))

        def run():
            out = list(F.conv_backward(wc, xc, gc, 1, 1)) + [F.conv(wc, xc, 1, 1)]
            out += list(F.delay_backward(gd, xd, d, 1.0)) + [F.delay_events(xd, d, 1.0).to_dense()]
            s, u = F.dense_srm_forward(wf, xf, eps, nu, neuron.theta, sim.ts)
            out += [s, u, F.srm_dense_backward_weights(s, u, neuron, eps, sim.ts, wf, xf)]
            return out
        return run
    runs = [make(0), make(1)]
    serial = [r() for r in runs]
    for _ in range(20):
        got = _run_in_threads(runs)
        for a_list, b_list in zip(got, serial):
            for a, b in zip(a_list, b_list):
                np.testing.assert_array_equal(a, b)


def _train(spec, seed, steps, batches):
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    net = Network.from_string(spec, neuron, SimParams(1.0, 30.0), seed=seed, delays=True, dense_weight_scale=40.0,
                              conv_weight_scale=200.0)
    opt = Adam(net.parameters(), lr=0.01)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    for k in range(steps):
        x, y = batches[k % len(batches)]
        out = net.forward(x, train=True)
        _, g = loss.value_and_grad(out, y)
        opt.zero_grad()
        net.backward(g)
        opt.step()
    return [p.data.copy() for p in net.parameters()]


@pytest.mark.parametrize("specs", [("8x8x2-64-10", "8x8x2-48-32-10"), ("8x8x2-4c3-2a-8c3-10", "8x8x2-64-10")])
def test_two_networks_trained_in_two_threads_equal_the_serial_runs(specs, frequent_switches):
    rng = np.random.default_rng(2)
    batches = [(SpikeEvents.from_dense((rng.random((4, 2, 8, 8, 30)) < 0.08).astype(np.float32)),
                rng.integers(0, 10, size=4)) for _ in range(3)]
    serial = [_train(spec, seed, 4, batches) for seed, spec in enumerate(specs)]
    threaded = _run_in_threads([lambda s=spec, k=seed: _train(s, k, 4, batches) for seed, spec in enumerate(specs)])
    for got, want in zip(threaded, serial):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b)


_IMPORT_PROBE = """
import json, sys
import numpy, threadpoolctl
before = threadpoolctl.threadpool_info()
had_row_stack = hasattr(numpy, "row_stack")
import pysrm, pysrm.network, pysrm.functional, pysrm.train, pysrm.losses
after_import = threadpoolctl.threadpool_info()
from pysrm import NeuronParams, SimParams
from pysrm.network import Network
import numpy as np
net = Network.from_string("8x8x2-600-10", NeuronParams(), SimParams(1.0, 20.0))
x = (np.random.default_rng(0).random((2, 2, 8, 8, 20)) < 0.5).astype(np.float32)  # dense: the BLAS path
inside = []
from pysrm import _threads
with _threads.compute_scope():
    inside = threadpoolctl.threadpool_info()
net.forward(x)
after_compute = threadpoolctl.threadpool_info()
key = lambda info: sorted((i["filepath"], i["num_threads"]) for i in info if i["user_api"] == "blas")
print(json.dumps({"before": key(before), "after_import": key(after_import), "inside": key(inside),
                  "after_compute": key(after_compute),
                  "row_stack": [had_row_stack, hasattr(numpy, "row_stack")]}))
"""


def test_import_changes_no_process_wide_state_and_compute_limits_blas_only_inside():
    """``import numpy, threadpoolctl; import pysrm`` leaves NumPy's BLAS thread count as it was (and NumPy
    itself unpatched); inside pysrm's compute the BLAS runs on one thread; afterwards it is restored."""
    pytest.importorskip("threadpoolctl")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                                           "OMP_NUM_THREADS", "PYSRM_KEEP_BLAS_THREADS")}
    out = subprocess.run([sys.executable, "-c", _IMPORT_PROBE], env=env, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    if not r["before"]:
        pytest.skip("no BLAS library visible to threadpoolctl")
    before, after_import = dict(r["before"]), dict(r["after_import"])
    assert {p: n for p, n in after_import.items() if p in before} == before
    assert all(n == 1 for _, n in r["inside"]), r["inside"]
    assert dict(r["after_compute"]) == after_import
    assert r["row_stack"][0] == r["row_stack"][1]
    if (os.cpu_count() or 1) >= 2:
        # so the checks above could have seen a change; a BLAS first loaded by the import (SciPy's,
        # which pysrm's kernels call) keeps its own default too
        assert min(after_import.values()) >= 2, after_import


def test_compute_scope_is_shared_by_threads_and_restores_once():
    """The BLAS limit is process-wide: entered by two threads it stays on until the last one leaves."""
    threadpoolctl = pytest.importorskip("threadpoolctl")
    import numba
    from pysrm import _threads
    F.dense(np.ones((2, 3)), np.ones((1, 3, 1, 1, 2)))  # a parallel kernel has run: the threading layer is known
    if numba.threading_layer() == "workqueue":
        pytest.skip("under the workqueue layer pysrm's compute is serialised across threads")
    key = lambda: {i["filepath"]: i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
    original = key()
    inside_a, leave_a, inside_b = threading.Event(), threading.Event(), threading.Event()
    seen = {}

    def a():
        with _threads.compute_scope():
            inside_a.set()
            leave_a.wait(5)
        seen["a_left"] = key()
        inside_b.wait(5)

    def b():
        inside_a.wait(5)
        with _threads.compute_scope():
            leave_a.set()
            inside_b.wait(0.2)
            seen["b_inside_after_a_left"] = key()
            inside_b.set()
    ta, tb = threading.Thread(target=a), threading.Thread(target=b)
    ta.start(), tb.start()
    ta.join(), tb.join()
    assert all(n == 1 for n in seen["b_inside_after_a_left"].values()), seen
    assert key() == original
