"""Every loss trains a small network to 100 % training accuracy on a toy two-class spike problem."""
import numpy as np
import pytest

from pysrm import NeuronParams, SimParams
from pysrm.classifier import predict
from pysrm.losses import make_loss
from pysrm.network import Network
from pysrm.optim import Adam

T = 50
SIM = SimParams(1.0, T)
NEURON = NeuronParams(theta=10, tau_sr=2, tau_ref=2)


def toy_problem(n=16, seed=0):
    """Class 0: input neurons 0-4 fire at 150 Hz, class 1: neurons 5-9; plus 20 Hz noise everywhere."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    x = (rng.random((n, 10, 1, 1, T)) < 0.02)
    for i in range(n):
        lo = 5 * y[i]
        x[i, lo:lo + 5, 0, 0, :] |= rng.random((5, T)) < 0.15
    return x.astype(np.float32), y


@pytest.mark.parametrize("name,opts", [
    ("spike-rate", dict(true_rate=0.2, false_rate=0.02)),
    ("spikemax", dict(window=10.0)),
    ("spikemax-g", {}),
    ("spikemax-s", {}),
    ("num-spikes", dict(neuron=NEURON, sim=SIM, true_count=10, false_count=2)),
])
def test_each_loss_learns_toy_problem(name, opts):
    x, y = toy_problem()
    net = Network.from_string("10-16-2", NEURON, SIM, seed=1)
    loss = make_loss(name, ts=1.0, **opts)
    opt = Adam(net.parameters(), lr=0.05)
    first = None
    for _ in range(100):
        out = net.forward(x, train=True)
        value, grad = loss.value_and_grad(out, y)
        first = value if first is None else first
        net.zero_grad()
        net.backward(grad)
        opt.step()
        if (predict(net.forward(x)) == y).all():
            break
    assert (predict(net.forward(x)) == y).mean() == 1.0
    assert loss.value(net.forward(x), y) < first
