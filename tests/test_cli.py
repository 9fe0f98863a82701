"""The pysrm command line: click runner and a real subprocess."""
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from pysrm_cli.main import main

TINY_FLAGS = ["--n-train", "48", "--n-test", "24", "--epochs", "1", "--batch-size", "16", "--t-sample", "30",
              "--net", "16x16x2-12-10"]


def pysrm_command():
    """The installed console script next to this Python, else ``python -m pysrm_cli.main``."""
    script = os.path.join(os.path.dirname(sys.executable), "pysrm")
    if os.path.exists(script):
        return [script]
    return [shutil.which("pysrm")] if shutil.which("pysrm") else [sys.executable, "-m", "pysrm_cli.main"]


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["report"], ["gradcheck"], ["data"], ["data", "info"],
                                 ["data", "fetch"]])
def test_help_is_complete(cmd):
    r = run(*cmd, "--help")
    assert r.exit_code == 0 and "Usage:" in r.output
    if cmd == ["train"]:
        for opt in ("--dataset", "--data-dir", "--net", "--loss", "--window", "--true-rate", "--false-rate", "--grad",
                    "--theta", "--tau-sr", "--tau-ref", "--scale-ref", "--tau-rho", "--scale-rho", "--ts",
                    "--t-sample", "--epochs", "--batch-size", "--lr", "--optimizer", "--seed", "--trials",
                    "--device", "--out", "--config", "--resume"):
            assert opt in r.output, opt


def test_unknown_choices_list_the_valid_ones(tmp_path):
    r = run("train", "--loss", "nll")
    assert r.exit_code != 0 and "spikemax-g" in r.output and "spike-rate" in r.output
    cfg = tmp_path / "c.toml"
    cfg.write_text("learning_rate = 0.1\n")
    r = run("train", "--config", str(cfg))
    assert r.exit_code != 0 and "unknown key 'learning_rate'" in r.output and "valid keys" in r.output
    r = run("train", "--net", "16x16x2-12q-10", *TINY_FLAGS[:-2])
    assert r.exit_code != 0 and "unknown layer token '12q'" in r.output


def test_train_eval_report_through_click(tmp_path):
    out = tmp_path / "run"
    r = run("train", *TINY_FLAGS, "--out", str(out), "--loss", "spikemax-s")
    assert r.exit_code == 0, r.output
    assert "test accuracy" in r.output and "spikes per sample" in r.output and str(out) in r.output
    r = run("eval", str(out), "--json")
    assert r.exit_code == 0
    res = json.loads(r.output)
    assert 0.0 <= res["accuracy"] <= 1.0 and res["n_samples"] == 24
    r = run("eval", str(out), "--t-max", "15")
    assert r.exit_code == 0 and "accuracy vs inference time" in r.output
    r = run("train", *TINY_FLAGS, "--out", str(tmp_path / "trials"), "--trials", "2", "--loss", "spikemax-g")
    assert r.exit_code == 0 and "2 trials: test accuracy" in r.output
    assert (tmp_path / "trials" / "seed_0" / "report.json").exists()
    assert (tmp_path / "trials" / "seed_1" / "report.json").exists()
    r = run("report", str(out), str(tmp_path / "trials"), "--out", str(tmp_path / "rep"))
    assert r.exit_code == 0 and "| synthetic | spikemax-g |" in r.output
    assert (tmp_path / "rep" / "accuracy_vs_time.png").exists()


def test_cuda_request_without_gpu_is_one_clear_message(tmp_path):
    from pysrm.backend import cuda_available
    if cuda_available():
        pytest.skip("a CUDA device (or the simulator) is available")
    r = run("train", *TINY_FLAGS, "--device", "cuda", "--out", str(tmp_path / "r"))
    assert r.exit_code != 0 and "no usable CUDA GPU" in r.output and "Traceback" not in r.output


def test_gradcheck_command_passes():
    r = run("gradcheck")
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output and "spikemax" in r.output and "conv[event," in r.output


def test_real_subprocess_with_config_file(tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('net = "16x16x2-12-10"\nn_train = 48\nn_test = 24\nbatch_size = 16\nt_sample = 30.0\n'
                   'epochs = 3\n')
    p = subprocess.run(pysrm_command() + ["train", "--config", str(cfg), "--epochs", "1", "--out", str(tmp_path / "run")],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert p.returncode == 0, p.stderr
    assert "epoch 1/1" in p.stderr and "test accuracy" in p.stdout
    rows = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(rows) == 1  # the flag overrode the file's epochs = 3


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(tmp_path):
    """A real SIGINT to a running `pysrm train`: exit 130, a message, and a resumable checkpoint."""
    import signal
    import time
    out = tmp_path / "run"
    p = subprocess.Popen(pysrm_command() + ["train", "--n-train", "4000", "--n-test", "24", "--epochs", "50", "--batch-size", "8",
                          "--t-sample", "30", "--net", "16x16x2-12-10", "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "metrics.jsonl").exists() and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert f"pysrm train --resume {out}" in err
    assert (out / "checkpoints" / "last.npz").exists()
