"""One determinism rule: every op, loss and optimiser gives bitwise the same result with any number of
Numba threads (every parallel loop and every reduction is split by shape, never by thread count).

The same script runs in two subprocesses, under ``NUMBA_NUM_THREADS=1`` and ``=2``, and prints a
digest of every result: dense, conv, pool, delay (all strategies), the fused first-layer ops, the SRM
backward, the losses, the optimisers, and a short training run of the paper's N-MNIST CNN shape
(34x34x2-16c5-2a-32c3-2a-64c3-512-10, with delays) and of the dense network on tiny inputs.  Before
the engine rework the event-driven conv weight gradient split the batch by ``get_num_threads()``:
70 of 72 entries differed between 1 and 2 threads.
"""
import json
import os
import subprocess
import sys

import pytest

_SCRIPT = r'''
import hashlib, json
import numpy as np
from pysrm import NeuronParams, SimParams, SpikeEvents
from pysrm import functional as F
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import make_optimizer

out = {}
def put(name, *arrays):
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    out[name] = h.hexdigest()

rng = np.random.default_rng(0)
for dt in (np.float32, np.float64):
    tag = np.dtype(dt).name
    x = (rng.random((13, 40, 1, 1, 50)) < 0.05).astype(dt)
    w = rng.normal(size=(30, 40)).astype(dt)
    g = rng.normal(size=(13, 30, 1, 1, 50)).astype(dt)
    for st in ("plain", "event", "blas"):
        put(f"dense {st} {tag}", F.dense(w, x, strategy=st), *F.dense_backward(w, x, g, strategy=st))
    xc = (rng.random((8, 2, 16, 16, 40)) < 0.01).astype(dt)
    wc = rng.normal(size=(4, 2, 3, 3)).astype(dt)
    gc = rng.normal(size=(8, 4, 16, 16, 40)).astype(dt)
    for st in ("plain", "event", "blas"):
        put(f"conv {st} {tag}", F.conv(wc, xc, 1, 1, strategy=st), *F.conv_backward(wc, xc, gc, 1, 1, strategy=st))
    gs = rng.normal(size=(8, 4, 8, 8, 40)).astype(dt)
    for st in ("plain", "event"):
        put(f"conv s2 {st} {tag}", F.conv(wc, xc, 2, 1, strategy=st), *F.conv_backward(wc, xc, gs, 2, 1, strategy=st))
        put(f"pool {st} {tag}", F.pool(xc, 2, 11.0, strategy=st))
    put(f"pool backward {tag}", F.pool_backward(rng.normal(size=(8, 2, 8, 8, 40)).astype(dt), xc.shape, 2, 11.0))
    xd = (rng.random((6, 12, 1, 1, 40)) < 0.15).astype(dt)
    d = rng.uniform(0.2, 3.7, size=(12, 1, 1)).astype(dt)
    gd = rng.normal(size=xd.shape).astype(dt)
    put(f"delay {tag}", F.delay(xd, d, 1.0), F.delay_events(SpikeEvents.from_dense(xd), d, 1.0).to_dense())
    for st in ("plain", "event"):
        put(f"delay backward {st} {tag}", *F.delay_backward(gd, xd, d, 1.0, strategy=st))
    w2 = rng.normal(size=(10, 12)).astype(dt)
    gy = rng.normal(size=(6, 10, 1, 1, 40)).astype(dt)
    put(f"delay from dense {tag}", *F.delay_backward_from_dense(w2, gy, SpikeEvents.from_dense(xd), d, 1.0))
    neuron = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
    sim = SimParams(1.0, 50.0)
    eps, nu = F.srm_kernel(neuron, sim), F.refractory_kernel(neuron, sim)
    xf = SpikeEvents.from_dense((rng.random((9, 20, 1, 1, 50)) < 0.1).astype(dt))
    wf = (rng.normal(size=(64, 20)) * 3).astype(dt)
    s, u, ev = F.dense_srm_forward(wf, xf, eps, nu, neuron.theta, sim.ts, need_events=True)
    put(f"dense_srm_forward {tag}", s, u, ev.to_dense())
    gsp = rng.normal(size=s.shape).astype(dt)
    put(f"srm_dense_backward_weights {tag}", F.srm_dense_backward_weights(gsp, u, neuron, eps, sim.ts, wf, xf))
    w3 = rng.normal(size=(10, 64)).astype(dt)
    d3 = rng.uniform(0.2, 3.7, size=(64, 1, 1)).astype(dt)
    g3 = rng.normal(size=(9, 10, 1, 1, 50)).astype(dt)
    put(f"through delay {tag}", *F.srm_dense_backward_through_delay(g3, w3, ev, d3, sim.ts, u, neuron, eps, wf, xf))
    for st in ("plain", "fused"):
        put(f"srm_backward {st} {tag}", F.srm_backward(gsp, u, neuron, eps, sim.ts, strategy=st))
    so = (rng.random((16, 10, 1, 1, 60)) < 0.2).astype(dt)
    y = rng.integers(0, 10, size=16)
    for name in ("spike-rate", "spikemax", "spikemax-g", "spikemax-s", "num-spikes"):
        l, gl = make_loss(name, ts=1.0, **({"window": 10.0} if name == "spikemax" else {})).value_and_grad(so, y)
        put(f"loss {name} {tag}", np.float64(l), gl)

from pysrm.layers import Parameter
for name in ("sgd", "adam", "nadam"):
    p = Parameter(rng.normal(size=(1000, 300)).astype(np.float32), "p")
    opt = make_optimizer(name, [p], lr=0.01)
    for _ in range(3):
        p.grad[...] = rng.normal(size=p.data.shape)
        opt.step()
    put(f"optimiser {name}", p.data)

def train(spec, shape, T, steps, seed):
    r = np.random.default_rng(seed)
    net = Network.from_string(spec, NeuronParams(theta=10.0, tau_sr=2.0, tau_ref=2.0), SimParams(1.0, T), seed=seed,
                              delays=True)
    opt = make_optimizer("adam", net.parameters(), lr=0.01)
    loss = make_loss("spikemax", ts=1.0, window=10.0)
    for _ in range(steps):
        x = SpikeEvents.from_dense((r.random((4,) + shape + (T,)) < 0.02).astype(np.float32))
        y = r.integers(0, 10, size=4)
        o = net.forward(x, train=True)
        _, g = loss.value_and_grad(o, y)
        opt.zero_grad()
        net.backward(g)
        opt.step()
    return [p.data for p in net.parameters()] + [s for _, s in net.layer_spikes]
put("train nmnist cnn", *train("34x34x2-16c5-2a-32c3-2a-64c3-512-10", (2, 34, 34), 16, 2, 1))
put("train dense", *train("34x34x2-512-10", (2, 34, 34), 40, 3, 2))
print(json.dumps(out))
'''


def _digests(threads: int) -> dict:
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_op_loss_optimiser_and_training_is_bitwise_independent_of_the_thread_count():
    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs 2 cores for NUMBA_NUM_THREADS=2")
    one, two = _digests(1), _digests(2)
    assert one.keys() == two.keys() and len(one) > 50
    differing = sorted(k for k in one if one[k] != two[k])
    assert differing == []
