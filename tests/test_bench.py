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
