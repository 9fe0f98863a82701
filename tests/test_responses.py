import math

import numpy as np
import pytest

import reference as ref
from pysrm import NeuronParams, SimParams
from pysrm.functional import psp, refractory_kernel, spike, srm_kernel


def test_kernels_match_slayer_definition():
    n = NeuronParams(theta=10, tau_sr=1, tau_ref=1, scale_ref=2)
    sim = SimParams(1.0, 300)
    eps = srm_kernel(n, sim)
    np.testing.assert_allclose(eps, ref.alpha(1.0, 1.0, 1.0, 300, 0.01))
    # t=7: 7 e^-6 = 0.01735 kept; t=8: 8 e^-7 = 0.0073 < 0.01 and t > tau -> stop
    assert len(eps) == 8 and eps[0] == 0.0 and eps[1] == 1.0
    nu = refractory_kernel(n, sim)
    assert nu[1] == pytest.approx(-20.0) and len(nu) == 11
    nu4 = refractory_kernel(n, sim, tolerance=1e-4)
    assert len(nu4) > len(nu)
    assert np.all(np.abs(nu4[-1:]) >= 1e-4)
    assert eps.dtype == np.float64


def test_kernel_tolerance_condition_needs_t_beyond_tau():
    # small values before the peak (t <= tau) do not stop the kernel
    eps = srm_kernel(NeuronParams(tau_sr=20.0), SimParams(0.01, 100.0))
    assert eps[1] < 0.01 and len(eps) > 2000


def test_single_neuron_hand_worked():
    """One input spike of weight 20 at t=3 ms; theta 10, tau_sr = tau_ref = 1 ms, Ts = 1 ms.

    u[t] = 20 * eps[t-3]: u[4] = 20 (>= theta -> spike at 4 ms), u[5] = 20 * 2/e = 14.715,
    and after the spike u[5] += nu[1] = -20 -> -5.285 (refractory dip), u[6] = 20*3e^-2 - 20*2/e = -6.597.
    """
    n = NeuronParams(theta=10, tau_sr=1, tau_ref=1)
    sim = SimParams(1.0, 20.0)
    x = np.zeros((1, 1, 1, 1, 20))
    x[..., 3] = 1.0  # amplitude 1/Ts
    u = psp(20.0 * x, srm_kernel(n, sim), sim.ts)
    assert u[0, 0, 0, 0, 4] == pytest.approx(20.0)
    assert u[0, 0, 0, 0, 5] == pytest.approx(20 * 2 / math.e)
    s, up = spike(u, refractory_kernel(n, sim), n.theta, sim.ts)
    assert np.flatnonzero(s[0, 0, 0, 0]).tolist() == [4]
    assert s[0, 0, 0, 0, 4] == 1.0
    assert up[0, 0, 0, 0, 5] == pytest.approx(20 * 2 / math.e - 20.0)
    assert up[0, 0, 0, 0, 6] == pytest.approx(20 * 3 * math.exp(-2) - 20 * 2 / math.e)
    assert up[0, 0, 0, 0, 5] < 0  # the refractory dip


def test_params_validation():
    with pytest.raises(ValueError, match="tau_sr must be > 0"):
        NeuronParams(tau_sr=0)
    with pytest.raises(ValueError, match="theta must be > 0, got -1"):
        NeuronParams(theta=-1)
    with pytest.raises(ValueError, match="does not divide"):
        SimParams(ts=0.7, t_sample=10)
    with pytest.raises(TypeError, match="ts must be a number"):
        SimParams(ts="a")
    assert SimParams(0.5, 300).n_bins == 600
