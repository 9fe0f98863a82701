"""``pysrm`` commands: train, eval, report, gradcheck, data (click only: parse, call pysrm, print)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

import pysrm  # noqa: F401  (first: pysrm sets its thread defaults before NumPy loads)
from pysrm.config import (DATASET_CHOICES, DEVICE_CHOICES, GRAD_CHOICES, LOSS_CHOICES, OPTIMIZER_CHOICES,
                          TrainConfig)

from .data_cmd import data as data_group
from .sweep_cmd import sweep as sweep_cmd

# (option, config key, click type, help) for every `pysrm train` setting; all default to None so that
# only the flags a user gives override the config file.
TRAIN_OPTIONS = [
    ("--dataset", "dataset", click.Choice(DATASET_CHOICES), "dataset (default synthetic: embedded, no download)"),
    ("--data-dir", "data_dir", str, "folder of the dataset files"),
    ("--train-list", "train_list", str, "N-MNIST list layout: training list file (e.g. train1K.txt)"),
    ("--test-list", "test_list", str, "N-MNIST list layout: test list file (e.g. test100.txt)"),
    ("--n-train", "n_train", int, "use only the first N training samples"),
    ("--n-test", "n_test", int, "use only the first N test samples"),
    ("--val-split", "val_split", float, "fraction of the training set held out for validation (selects 'best')"),
    ("--test-every", "test_every", int, "evaluate the test split after every N-th epoch (0: only the final "
                                        "network, for tuning on --val-split without seeing test results)"),
    ("--jitter", "jitter", int, "random spatial jitter augmentation, pixels"),
    ("--net", "net", str, "network shorthand, e.g. 34x34x2-16c5-2a-32c3-2a-64c3-512-10"),
    ("--dropout", "dropout", float, "dropout probability before hidden dense/conv layers"),
    ("--dense-weight-scale", "dense_weight_scale", float, "init scale of dense weights (SLAYER: 10)"),
    ("--conv-weight-scale", "conv_weight_scale", float, "init scale of conv weights (SLAYER: 100)"),
    ("--loss", "loss", click.Choice(LOSS_CHOICES), "loss function"),
    ("--window", "window", float, "spikemax sliding window W (ms)"),
    ("--true-rate", "true_rate", float, "spike-rate target for the label neuron (spikes/ms)"),
    ("--false-rate", "false_rate", float, "spike-rate target for the other neurons (spikes/ms)"),
    ("--eps", "eps", float, "count added to every spike count by the spikemax losses"),
    ("--grad", "grad", click.Choice(GRAD_CHOICES), "loss gradient: exact derivative or the paper's formulas"),
    ("--theta", "theta", float, "firing threshold"),
    ("--tau-sr", "tau_sr", float, "spike response time constant (ms)"),
    ("--tau-ref", "tau_ref", float, "refractory time constant (ms)"),
    ("--scale-ref", "scale_ref", float, "refractory scale (relative to theta)"),
    ("--tau-rho", "tau_rho", float, "surrogate width (relative to theta)"),
    ("--scale-rho", "scale_rho", float, "surrogate scale"),
    ("--ts", "ts", float, "time bin (ms)"),
    ("--t-sample", "t_sample", float, "sample length (ms)"),
    ("--test-t-sample", "test_t_sample", float, "length of test samples (ms; default t_sample)"),
    ("--epochs", "epochs", int, "training epochs"),
    ("--batch-size", "batch_size", int, "mini-batch size"),
    ("--lr", "lr", float, "learning rate"),
    ("--lr-decay", "lr_decay", float, "learning-rate factor applied after every epoch"),
    ("--optimizer", "optimizer", click.Choice(OPTIMIZER_CHOICES), "optimiser"),
    ("--seed", "seed", int, "random seed (initialisation, shuffling, dropout)"),
    ("--trials", "trials", int, "number of runs with seeds seed..seed+K-1"),
    ("--device", "device", click.Choice(DEVICE_CHOICES), "cpu, cuda, or auto (cuda when available)"),
    ("--out", "out", str, "run directory (default runs/<dataset>_<loss>_seed<seed>_<time>)"),
]


def _train_options(f):
    f = click.option("--delays/--no-delays", "delays", default=None, help="trainable axonal delays")(f)
    for opt, key, typ, help_ in reversed(TRAIN_OPTIONS):
        f = click.option(opt, key, type=typ, default=None, help=help_)(f)
    return f


def resolve_config(config_file, flags: dict) -> TrainConfig:
    """Defaults <- config file <- command-line flags; raises ValueError with the valid keys on unknown ones."""
    overrides = {k: v for k, v in flags.items() if v is not None}
    if config_file:
        return TrainConfig.from_toml(config_file, overrides)
    return TrainConfig().updated(overrides, source="command line")


class ProgressBar:
    """A one-line progress bar per epoch: loss, accuracy, samples/s and ETA (plain lines when not a TTY)."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.last = 0.0

    def start_epoch(self, epoch, epochs, n_batches):
        self.epoch, self.epochs, self.t0 = epoch, epochs, time.perf_counter()

    def batch(self, done, n, loss, acc, sps):
        now = time.perf_counter()
        if not self.tty or (now - self.last < 0.1 and done < n):
            return
        self.last = now
        width = 24
        fill = int(width * done / n)
        eta = (now - self.t0) / done * (n - done)
        self.stream.write(f"\repoch {self.epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}] "
                          f"{done}/{n} loss {loss:.4f} acc {100 * acc:5.1f}% {sps:6.0f} samples/s ETA {eta:4.0f}s ")
        self.stream.flush()

    def end_epoch(self, row):
        extra = f" val acc {100 * row['val_acc']:.1f}%" if "val_acc" in row else ""
        test = (f" | test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.1f}%" if "test_acc" in row
                else "")
        line = (f"epoch {row['epoch'] + 1}/{self.epochs}: train loss {row['train_loss']:.4f} acc "
                f"{100 * row['train_acc']:.1f}%{test}"
                f"{extra} | {row['seconds']:.1f} s, {row['samples_per_s']:.0f} samples/s")
        self.stream.write(("\r" + " " * 110 + "\r" if self.tty else "") + line + "\n")
        self.stream.flush()

    def message(self, text):
        self.stream.write(text + "\n")


def _fail(e: Exception):
    raise click.ClickException(str(e))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pysrm")
def main():
    """pysrm: SRM spiking neural networks with SLAYER-style backpropagation and the Spikemax losses.

    Start with `pysrm train` (trains on the embedded synthetic dataset, no download).
    """
    from pysrm._malloc import tune_malloc
    tune_malloc()  # the command owns its process: keep freed temporaries for reuse (pysrm/_malloc.py)


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file (flags override it)")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="continue an interrupted run directory")
@_train_options
def train(config_file, resume_dir, **flags):
    """Train a network and write a run directory (config, metrics, checkpoints, report).

    Every option can also be set in a TOML file given with --config, using the option name with
    underscores (tau_sr = 1.0); command-line flags override the file.
    """
    from pysrm.train import TrainingInterrupted, train as train_run, train_trials
    bar = ProgressBar()
    try:
        if resume_dir:
            reports = [train_run(TrainConfig(), run_dir=resume_dir, resume=True, progress=bar)]
        else:
            cfg = resolve_config(config_file, flags).validate()
            click.echo(f"pysrm train: dataset {cfg.dataset}, network {cfg.net}, loss {cfg.loss}, "
                       f"{cfg.epochs} epochs, seed {cfg.seed}" + (f" x {cfg.trials} trials" if cfg.trials > 1 else ""),
                       err=True)
            reports = train_trials(cfg, progress=bar)
    except TrainingInterrupted as e:
        click.echo(f"\n{e}", err=True)
        sys.exit(130)
    except (ValueError, TypeError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        _fail(e)
    for rep in reports:
        _print_summary(rep)
    if len(reports) > 1:
        import numpy as np
        accs = np.array([r["final_accuracy"] for r in reports]) * 100
        click.echo(f"\n{len(reports)} trials: test accuracy {accs.mean():.2f} ± {accs.std(ddof=1):.2f} %")


def _print_summary(rep: dict):
    t = rep["test"]
    lat = t["latency_ms"]
    lat_s = ", ".join(f"{int(float(k) * 100)}%: {'-' if v is None else f'{v:.0f} ms'}" for k, v in lat.items())
    click.echo(f"\nRun {rep['run_dir']} (seed {rep['seed']})")
    click.echo(f"  test accuracy      {100 * t['accuracy']:.2f} % ({t['n_samples']} samples)")
    click.echo(f"  latency            {lat_s} (time to reach that fraction of the final accuracy)")
    click.echo("  spikes per sample  " + ", ".join(f"{k} {v:.1f}" for k, v in t["spike_counts_per_layer"].items()))
    click.echo(f"  saved in           {rep['run_dir']} (config.toml, metrics.jsonl, checkpoints/, report.json)")


@main.command("eval")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--data-dir", default=None, help="dataset folder (default: the one the run used)")
@click.option("--t-max", type=float, default=None,
              help="length of the simulated test samples in ms (default: the run's test_t_sample or t_sample)")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="last", show_default=True,
              help="'last' is the final network (the one report.json describes); 'best' is selected on the "
                   "validation split, or on the test set when the run had none")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def eval_cmd(run_dir, data_dir, t_max, checkpoint, device, as_json):
    """Test accuracy, latency curve and spike counts of a saved network."""
    from pysrm.train import build_loss, evaluate, load_data, load_run, test_sim_params
    try:
        from pysrm.config import TrainConfig as _C
        cfg = _C.from_toml(Path(run_dir) / "config.toml")
        if data_dir:
            cfg = cfg.updated({"data_dir": data_dir})
        if t_max is not None:
            cfg = cfg.updated({"test_t_sample": t_max})
        sim = test_sim_params(cfg)
        _, net = load_run(run_dir, sim=sim, checkpoint=checkpoint, device=device)
        _, _, test = load_data(cfg, test_sim=sim)
        res = evaluate(net, test, cfg, build_loss(cfg))
    except (ValueError, TypeError, FileNotFoundError, RuntimeError) as e:
        _fail(e)
    d = res.to_dict()
    if as_json:
        click.echo(json.dumps(d))
        return
    _print_summary({"run_dir": run_dir, "seed": cfg.seed, "test": d})
    step = max(1, len(res.times) // 10)
    click.echo("  accuracy vs inference time: " + ", ".join(
        f"{t:.0f} ms {100 * a:.0f}%" for t, a in zip(res.times[step - 1::step], res.accuracy_curve[step - 1::step])))


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", default="report", show_default=True, help="folder for table.md/csv and figures")
def report(run_dirs, out_dir):
    """Aggregate runs (or folders of runs) into Table I and the paper's figures."""
    from pysrm.report import make_report
    try:
        res = make_report(run_dirs, out_dir)
    except (ValueError, FileNotFoundError) as e:
        _fail(e)
    click.echo(res["markdown"])
    click.echo(f"{res['n_runs']} runs -> {out_dir}/table.md, {out_dir}/table.csv")
    if res["figures"]:
        click.echo("figures: " + ", ".join(res["figures"]))
    else:
        click.echo("figures skipped: matplotlib is not installed (pip install 'pysrm[plot]')")


@main.command()
@click.option("--dtype", type=click.Choice(["float64"]), default="float64", show_default=True,
              help="precision of the checks (finite differences need float64)")
@click.option("--seed", type=int, default=0, show_default=True)
def gradcheck(dtype, seed):
    """Finite-difference checks of every op and loss; non-zero exit on failure."""
    from pysrm.gradcheck import format_table, run_all
    results = run_all(seed)
    click.echo(format_table(results))
    failed = [r for r in results if not r.passed]
    click.echo(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


@main.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def bench(ctx):
    """Speed benchmarks: samples/s, compile time, peak memory (options: --quick, --out PREFIX)."""
    from pysrm.bench import main as bench_main
    sys.exit(bench_main(ctx.args))


main.add_command(data_group)
main.add_command(sweep_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
