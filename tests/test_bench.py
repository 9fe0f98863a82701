"""The benchmark harness runs (a functional check only: speed is never asserted in tests)."""
import pytest

from pysrm.bench import markdown, run_case


def test_bench_case_reports_every_measurement():
    r = run_case("t-scaling", batch=2, steps=1, T=20)
    for key in ("train_samples_per_s", "infer_samples_per_s", "compile_s", "peak_mb", "input_events_per_sample"):
        assert r[key] >= 0, key
    assert r["T"] == 20 and r["batch"] == 2
    assert "| t-scaling | 34x34x2-512-10 | 20 | 2 |" in markdown([r])


def test_unknown_case_is_an_error():
    with pytest.raises(KeyError):
        run_case("imagenet", batch=1, steps=1)


def test_nmnist_benchmark_batches_span_epochs_when_more_are_asked():
    """A case asking for more batches than one epoch holds gets them (a shorter list once made the
    timed loop shorter than the step count it was divided by)."""
    import pytest
    from pysrm.bench import _nmnist_batches, _nmnist_dir
    from pysrm.params import SimParams
    if not _nmnist_dir().is_dir():
        pytest.skip("NMNISTsmall not available")
    batches = _nmnist_batches(250, 6, SimParams(1.0, 30.0))  # 1,000 samples: 4 batches per epoch
    assert len(batches) == 6 and all(len(y) == 250 for _, y in batches)
