"""What the plan and block tests share: the neuron and simulation of their tiny networks and one
training step (forward, loss, backward) that returns the output, every layer's spikes and the gradients."""
from pysrm import NeuronParams, SimParams

NEURON = NeuronParams(theta=4.0, tau_sr=3.0, tau_ref=2.0, tau_rho=0.5)
SIM = SimParams(1.0, 40.0)


def step_names(net):
    return [type(s).__name__ for s in net.plan]


def train_step(net, x, y, loss):
    out = net.forward(x, train=True)
    _, g = loss.value_and_grad(out, y)
    net.zero_grad()
    net.backward(g)
    return out, [s for _, s in net.layer_spikes], [p.grad.copy() for p in net.parameters()]
