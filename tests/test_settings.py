"""pysrm.settings: the one record of tunables, the environment read in one place, scoped overrides."""
import threading

import pytest

from pysrm import settings as S


def test_defaults_documented_and_valid():
    s = S.Settings()
    from dataclasses import fields
    for f in fields(s):
        assert len(f.metadata["doc"]) > 20, f.name  # each has its meaning / measurement
    assert s.event_density_threshold == 0.3 and s.memory_budget == 0
    assert "event_density_threshold = 0.3" in S.Settings.describe()


def test_override_is_scoped_and_validated():
    before = S.current()
    with S.override(event_density_threshold=0.0, gemm_rows=64) as s:
        assert S.current() is s and s.gemm_rows == 64 and s.event_density_threshold == 0.0
        with S.override(gemm_rows=32):
            assert S.current().gemm_rows == 32 and S.current().event_density_threshold == 0.0
        assert S.current().gemm_rows == 64
    assert S.current() is before
    with pytest.raises(TypeError, match="unknown setting.*event_density_threshold"):
        with S.override(event_threshold=0.1):
            pass
    with pytest.raises(ValueError, match="event_density_threshold must be a fraction"):
        with S.override(event_density_threshold=1.5):
            pass
    with pytest.raises(ValueError, match="gemm_rows must be >= 1"):
        S.Settings(gemm_rows=0)
    with pytest.raises(TypeError, match="whole number"):
        S.Settings(conv_block_tile=1.5)


def test_override_does_not_leak_into_other_threads():
    seen = []
    with S.override(fused_min_outputs=7):
        t = threading.Thread(target=lambda: seen.append(S.current().fused_min_outputs))
        t.start()
        t.join()
    assert seen == [S.Settings.from_environment().fused_min_outputs]


def test_environment_read_in_one_place():
    s = S.Settings.from_environment({"PYSRM_CUDA_GEMM": "numba", "PYSRM_CUDA_TF32": "1",
                                     "PYSRM_CUBLAS_PARTIAL_LIMIT": "100", "PYSRM_CUDA_GRID_Z_MAX": "5"})
    assert (s.cuda_gemm, s.cuda_tf32, s.cublas_partial_limit, s.cuda_grid_z_max) == ("numba", True, 100, 5)
    with pytest.raises(ValueError, match="PYSRM_CUDA_GEMM='blas'.*'auto', 'cublas', 'numba'"):
        S.Settings.from_environment({"PYSRM_CUDA_GEMM": "blas"})
    with pytest.raises(ValueError, match="PYSRM_CUDA_EVENT_CHUNK='x'"):
        S.Settings.from_environment({"PYSRM_CUDA_EVENT_CHUNK": "x"})
    with pytest.raises(ValueError, match="PYSRM_CUDA_CUPY='yes': expected 0 or 1"):
        S.Settings.from_environment({"PYSRM_CUDA_CUPY": "yes"})



def test_no_module_of_pysrm_reads_its_tunables_from_the_environment():
    """The PYSRM_* tunables are read by pysrm.settings only (paths such as PYSRM_DATA_DIR and
    PYSRM_CACHE_DIR are locations, read where they are used)."""
    import pathlib
    root = pathlib.Path(S.__file__).parent
    for path in root.rglob("*.py"):
        if path.name == "settings.py":
            continue
        text = path.read_text()
        for var in S.ENVIRONMENT:
            assert var not in text or f'"{var}"' not in text.replace("'", '"'), (path, var)


def test_network_takes_the_settings_in_force_and_its_backward_those_of_its_forward():
    """A Network built inside an override takes its memory budget from it; a backward runs with the
    settings its forward ran with (a conv block's kept potentials are tiled by conv_block_tile: a backward
    outside the forward's override gives the same gradients as one inside it)."""
    import numpy as np
    from pysrm import NeuronParams, SimParams
    from pysrm.network import Network
    neuron, sim = NeuronParams(theta=10.0, tau_sr=1.0, tau_ref=1.0), SimParams(1.0, 30.0)
    with S.override(memory_budget=12345):
        net = Network.from_string("10x10x2-4c3-2a-8-3", neuron, sim, delays=True, seed=0)
    assert net.options.memory_budget == 12345
    assert Network.from_string("10x10x2-8-3", neuron, sim).options.memory_budget == S.current().memory_budget
    rng = np.random.default_rng(0)
    x = (rng.random((6, 2, 10, 10, 30)) < 0.05).astype(np.float32)
    g = rng.normal(size=(6, 3, 1, 1, 30)).astype(np.float32)
    grads = []
    for outside in (False, True):
        net.zero_grad()
        with S.override(conv_block_tile=40):
            net.forward(x, train=True)
            if not outside:
                net.backward(g)
        if outside:
            net.backward(g)
        grads.append([p.grad.copy() for p in net.parameters()])
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)
