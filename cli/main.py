"""``pysrm`` commands: train, eval, report, gradcheck, data (click only: parse, call pysrm, print)."""
from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path

import click

import pysrm  # noqa: F401  (first: pysrm sets its thread defaults before NumPy loads)
from pysrm.config import (DATASET_CHOICES, DEVICE_CHOICES, EMPTY_SAMPLES_CHOICES, GRAD_CHOICES, LOSS_CHOICES,
                          OPTIMIZER_CHOICES, TrainConfig, is_tonic_dataset, normalize_dataset, normalize_loss)

from .data_cmd import data as data_group
from .export_cmd import eval_nir, export as export_cmd, nir_eval_options
from .paths import OutputDir, OutputPrefix
from .sweep_cmd import sweep as sweep_cmd


class NormalizedChoice(click.Choice):
    """A choice whose value is first brought to its canonical spelling (``spikemax_g`` -> ``spikemax-g``)."""

    def __init__(self, choices, normalize, **kwargs):
        super().__init__(choices, **kwargs)
        self.normalize = normalize

    def convert(self, value, param, ctx):
        return super().convert(self.normalize(value), param, ctx)


class DatasetChoice(NormalizedChoice):
    """The dataset names, or ``tonic:<ClassName>`` for a class of tonic.datasets."""

    def convert(self, value, param, ctx):
        v = self.normalize(value)
        if is_tonic_dataset(v):
            return v
        if isinstance(v, str) and v.startswith("tonic:"):
            self.fail(f"{value!r}: expected tonic:<ClassName>, a class of tonic.datasets such as tonic:NMNIST", param,
                      ctx)
        return super().convert(v, param, ctx)

    def get_metavar(self, param, *args, **kwargs):
        return "[" + "|".join(self.choices) + "|tonic:<ClassName>]"


class FiniteFloatRange(click.FloatRange):
    """A float range that also refuses NaN and infinities, so that the error names the option."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return v


#: numeric option types of the commands without a TrainConfig (eval --t-max, gradcheck --seed): a bad value is
#: refused by click with a message that names the option.  The train/sweep options are checked by
#: TrainConfig.validate, whose messages :func:`option_error` prefixes with the options given.
POSITIVE = FiniteFloatRange(min=0, min_open=True)
NON_NEGATIVE_INT = click.IntRange(min=0)

# (option, config key, click type, help) for every `pysrm train` setting; all default to None so that
# only the flags a user gives override the config file.
TRAIN_OPTIONS = [
    ("--dataset", "dataset", DatasetChoice(DATASET_CHOICES, normalize_dataset),
     "dataset (default synthetic: embedded, no download); tonic:<ClassName> reads tonic.datasets.<ClassName> "
     "from --data-dir (its save_to; never downloads; needs pip install \".[tonic]\" in a clone of pysrm)"),
    ("--data-dir", "data_dir", str, "folder of the dataset files (for tonic:<ClassName>: tonic's save_to)"),
    ("--train-list", "train_list", str, "N-MNIST list layout: training list file (e.g. train1K.txt)"),
    ("--test-list", "test_list", str, "N-MNIST list layout: test list file (e.g. test100.txt)"),
    ("--n-train", "n_train", int, "use only the first N training samples (N >= 1)"),
    ("--n-test", "n_test", int, "use only the first N test samples (N >= 1)"),
    ("--empty-samples", "empty_samples", click.Choice(EMPTY_SAMPLES_CHOICES),
     "samples with no event (checked at start-up): error (list them and stop) or skip (leave them out, counted)"),
    ("--val-split", "val_split", float, "fraction of the training set held out for validation (selects 'best')"),
    ("--test-every", "test_every", int, "evaluate the test split after every N-th epoch (0: only the final "
                                        "network, for tuning on --val-split without seeing test results)"),
    ("--jitter", "jitter", int, "random spatial jitter augmentation, pixels (an error when it would move most "
                                "events off the sensor)"),
    ("--net", "net", str, "network shorthand, e.g. 34x34x2-16c5-2a-32c3-2a-64c3-512-10"),
    ("--dropout", "dropout", float, "dropout probability before hidden dense/conv layers"),
    ("--dense-weight-scale", "dense_weight_scale", float, "init scale of dense weights (SLAYER: 10)"),
    ("--conv-weight-scale", "conv_weight_scale", float, "init scale of conv weights (SLAYER: 100)"),
    ("--response-tolerance", "response_tolerance", float,
     "sample the spike and refractory responses until they fall below this (SLAYER: 0.01; 1e-12 for a "
     "network that a NIR backend integrating the ODEs reproduces exactly)"),
    ("--loss", "loss", NormalizedChoice(LOSS_CHOICES, normalize_loss),
     "loss function (spikemax_g / spikemax_s are accepted too)"),
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
    ("--epochs", "epochs", int, "training epochs (with --resume: extend the run to this many epochs in all)"),
    ("--batch-size", "batch_size", int, "mini-batch size"),
    ("--lr", "lr", float, "learning rate"),
    ("--lr-decay", "lr_decay", float, "learning-rate factor applied after every epoch"),
    ("--optimizer", "optimizer", click.Choice(OPTIMIZER_CHOICES), "optimiser"),
    ("--seed", "seed", int, "random seed (initialisation, shuffling, dropout)"),
    ("--trials", "trials", int, "number of runs with seeds seed..seed+K-1"),
    ("--device", "device", click.Choice(DEVICE_CHOICES), "cpu, cuda, or auto (cuda when available; says which "
                                                         "it picked)"),
    ("--memory-gb", "memory_gb", float, "memory budget of the conv layers, GiB (default 0): conv layers on dense-ish "
                                        "inputs run unfused when they fit in it, else as fused blocks (faster)"),
    ("--out", "out", OutputDir(), "run directory (default runs/<dataset>_<loss>_seed<seed>_<time>); an existing run is "
                          "not overwritten (see --resume, --overwrite)"),
]


def option_error(e: Exception, flags: dict) -> str:
    """The message of a config error, prefixed with the command-line options it is about.

    A config check names the setting by its key (``seed must be an integer >= 0; got -1``,
    ``window=20.0 ms is longer than test_t_sample=10.0 ms ...``); every key it names that was given as
    a flag is put in front as that flag and its value (``--seed -1: seed must be ...``), so that the
    error names the option the user typed.  Keys set in a config file stay as they are (the file uses
    the key).
    """
    import re
    text = str(e)
    named = [k for k, v in flags.items()
             if v is not None and re.search(rf"(?<![\w-]){k}(?:=| must\b| in \b| -?[\d.]|$)", text)]
    if not named:
        return text
    shown = ", ".join(("--delays/--no-delays" if k == "delays" else f"--{k.replace('_', '-')} {flags[k]}")
                      for k in sorted(named, key=text.find))
    return f"{shown}: {text}"


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


#: environment variable: seconds between plain progress lines when stderr is not a terminal
PROGRESS_SECONDS_ENV = "PYSRM_PROGRESS_SECONDS"


class ProgressBar:
    """Training progress on stderr.

    On a terminal: one line per epoch, redrawn in place (loss, accuracy, samples/s, ETA).  Elsewhere
    (a log file, nohup, CI, a notebook): a plain line every ``interval`` seconds (default 30, or
    ``$PYSRM_PROGRESS_SECONDS``), so that a long epoch is never silent.  Before the first batch of the
    process it says that the kernels are being compiled (Numba compiles them on the first run and
    caches them on disk).  With ``--trials`` every line starts with the trial.
    """

    def __init__(self, stream=None, interval: float | None = None):
        self.stream = stream or sys.stderr
        try:
            self.tty = self.stream.isatty()
        except (AttributeError, ValueError):
            self.tty = False
        if interval is None:
            try:
                interval = float(os.environ.get(PROGRESS_SECONDS_ENV, 30.0))
            except ValueError:
                interval = 30.0
        self.interval = interval
        self.last = 0.0
        self.prefix = ""
        self.compiled = False
        self.epochs = None

    def _write(self, text):
        self.stream.write(text)
        self.stream.flush()

    def start_trial(self, k, n, seed):
        self.prefix = f"trial {k}/{n} (seed {seed}) "

    def start_epoch(self, epoch, epochs, n_batches):
        self.epoch, self.epochs, self.t0 = epoch, epochs, time.perf_counter()
        self.last = self.t0
        if not self.compiled:
            note = (f"{self.prefix}epoch {epoch + 1}/{epochs}: first batch; compiling the kernels not cached yet "
                    f"(about a minute on a first run; later runs load them from disk) ...")
            self._write("\r" + note if self.tty else note + "\n")

    def batch(self, done, n, loss, acc, sps):
        now = time.perf_counter()
        first = not self.compiled
        self.compiled = True
        eta = (now - self.t0) / done * (n - done)
        # the first batch of a run includes compiling: no rate or ETA from it
        speed = "compiled" if first else f"{rate(sps)} samples/s, ETA {eta:.0f} s"
        if self.tty:
            if now - self.last < 0.1 and done < n and not first:
                return
            self.last = now
            width = 24
            fill = int(width * done / n)
            self._write(f"\r{self.prefix}epoch {self.epoch + 1}/{self.epochs} [{'#' * fill}{'.' * (width - fill)}] "
                        f"{done}/{n} loss {loss:.4f} acc {100 * acc:5.1f}% {speed} ")
            return
        if done < n and (first or now - self.last >= self.interval):
            self.last = now
            self._write(f"{self.prefix}epoch {self.epoch + 1}/{self.epochs}: batch {done}/{n}, loss {loss:.4f}, acc "
                        f"{100 * acc:.1f}%, {speed}\n")

    def end_epoch(self, row):
        extra = f" val acc {100 * row['val_acc']:.1f}%" if "val_acc" in row else ""
        test = (f" | test loss {row['test_loss']:.4f} acc {100 * row['test_acc']:.1f}%" if "test_acc" in row
                else "")
        line = (f"{self.prefix}epoch {row['epoch']}/{self.epochs}: train loss {row['train_loss']:.4f} acc "
                f"{100 * row['train_acc']:.1f}%{test}"
                f"{extra} | {row['seconds']:.1f} s, {rate(row['samples_per_s'])} samples/s")
        self._write(("\r" + " " * 120 + "\r" if self.tty else "") + line + "\n")

    def message(self, text):
        self._write(text + "\n")

    def start_eval(self, what, n_samples):
        """Before an evaluation (it can take long: the paper's CNN spends about 30 s on its test split)."""
        text = (f"{self.prefix}final evaluation on {n_samples} test samples ..." if what == "final test" else
                f"{self.prefix}epoch {self.epoch + 1}/{self.epochs}: evaluating on {n_samples} {what} samples ...")
        if self.tty:
            self._write("\r" + " " * 120 + "\r" + text)
            return
        now = time.perf_counter()
        if now - self.last >= self.interval:
            self.last = now
            self._write(text + "\n")

    def stop_requested(self, text):
        """Acknowledge Ctrl-C at once; runs inside the signal handler, so it writes with os.write (a
        buffered write of the interrupted code may be half done)."""
        data = ("\n" + text + "\n").encode()
        try:
            os.write(self.stream.fileno(), data)
        except (AttributeError, ValueError, OSError):  # a stream without a file descriptor (tests)
            self.stream.write(data.decode())


def _fail(e: Exception):
    raise click.ClickException(str(e))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(version=pysrm.__version__, package_name="pysrm-snn",
                      message="%(prog)s %(version)s (distribution pysrm-snn)")
def main():
    """pysrm: SRM spiking neural networks with SLAYER-style backpropagation and the Spikemax losses.

    Start with `pysrm train` (trains on the embedded synthetic dataset, no download).
    """
    from pysrm._malloc import tune_malloc
    from pysrm._threads import limit_blas_for_process
    tune_malloc()  # the command owns its process: keep freed temporaries for reuse (pysrm/_malloc.py)
    limit_blas_for_process(1)  # and its BLAS: one thread next to Numba's (unless OPENBLAS_NUM_THREADS is set)
    _show_settings_warnings()


def _show_settings_warnings():
    """Print a :class:`pysrm.responses.SettingsWarning` (a setting that degrades the network) as one line
    'warning: ...' on stderr, once per message (other warnings keep Python's format)."""
    import warnings

    from pysrm.responses import SettingsWarning
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, SettingsWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            shown(message, category, filename, lineno, file, line)
    warnings.showwarning = show


# options that `pysrm train --resume` accepts besides the run directory (the run's own config holds the rest):
# --epochs, --device, and the evaluation settings of pysrm.train.RESUME_OVERRIDES (they override the saved config,
# so that a run whose test settings cannot work can still be finished)
RESUME_OPTIONS = ("epochs", "device", "test_t_sample", "test_every")


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False), help="TOML config file (flags override it)")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="continue an interrupted run directory (or the seed_* runs of a --trials run) with the config "
                   "saved in it; with --epochs N, extend it to N epochs")
@click.option("--overwrite", is_flag=True,
              help="replace the run already in --out (its files are deleted once the new run has passed its checks)")
@_train_options
def train(config_file, resume_dir, overwrite, **flags):
    """Train a network and write a run directory (config, metrics, checkpoints, report).

    Every option can also be set in a TOML file given with --config, using the option name with
    underscores (tau_sr = 1.0); command-line flags override the file.  An existing run directory is
    never overwritten unless --overwrite is given.
    """
    from pysrm.train import RunFinished, TrainingInterrupted, resumable_runs, train as train_run, train_trials
    bar = ProgressBar()
    finished = []
    try:
        if resume_dir:
            given = [k for k, v in flags.items() if v is not None and k not in RESUME_OPTIONS]
            if config_file or given or overwrite:
                names = (["--config"] if config_file else []) + (["--overwrite"] if overwrite else []) + [
                    "--delays/--no-delays" if k == "delays" else "--" + k.replace("_", "-") for k in given]
                raise click.UsageError(f"--resume continues a run with the config saved in it; only --epochs (to "
                                       f"extend it) and --device can be given with it, not {', '.join(names)}. "
                                       f"Of its evaluation settings, --test-t-sample and --test-every can be "
                                       f"changed too")
            runs = resumable_runs(resume_dir)
            if not runs:
                raise FileNotFoundError(f"cannot resume: {resume_dir} holds no run (no config.toml, and no "
                                        f"seed_*/config.toml of a --trials run)")
            reports = []
            for k, rd in enumerate(runs):
                if len(runs) > 1:
                    bar.start_trial(k + 1, len(runs), rd.name[5:])
                overrides = {k: flags[k] for k in ("test_t_sample", "test_every") if flags.get(k) is not None}
                try:
                    reports.append(train_run(TrainConfig(), run_dir=rd, resume=True, progress=bar,
                                             epochs=flags.get("epochs"), device=flags.get("device"),
                                             overrides=overrides or None))
                except ValueError as e:
                    if "test_t_sample" not in str(e):
                        raise
                    raise ValueError(f"{e}. To finish {rd} with other test settings: pysrm train --resume {rd} "
                                     f"--test-t-sample MS (they override its saved config)") from None
                except RunFinished as f:
                    click.echo(str(f), err=True)
                    finished.append(str(f.run_dir))
                    if f.report is not None:
                        reports.append(f.report)
        else:
            cfg = resolve_config(config_file, flags).validate()
            click.echo(f"pysrm train: dataset {cfg.dataset}, network {cfg.net}, loss {cfg.loss}, "
                       f"{cfg.epochs} epochs, seed {cfg.seed}" + (f" x {cfg.trials} trials" if cfg.trials > 1 else ""),
                       err=True)
            reports = train_trials(cfg, progress=bar, overwrite=overwrite)
    except TrainingInterrupted as e:
        click.echo(f"\n{e}", err=True)
        sys.exit(130)
    except KeyboardInterrupt as e:  # Ctrl-C during start-up or a second Ctrl-C (TrainingAborted says what is kept)
        text = str(e) or "interrupted (Ctrl-C) before a run started or between runs; the runs that finished are saved"
        click.echo(f"\n{text}", err=True)
        sys.exit(130)
    except ValueError as e:
        _fail(ValueError(option_error(e, flags)))
    except (TypeError, FileNotFoundError, FileExistsError, FloatingPointError, RuntimeError, ImportError) as e:
        _fail(e)  # ImportError: an optional dependency (tonic, h5py, ...) missing; the message says what to install
    for rep in reports:
        _print_summary(rep, note="already finished" if rep.get("run_dir") in finished else None)
    if len(reports) > 1:
        import numpy as np
        accs = np.array([r["final_accuracy"] for r in reports]) * 100
        click.echo(f"\n{len(reports)} trials: test accuracy {accs.mean():.2f} ± {accs.std(ddof=1):.2f} %")


def rate(sps: float) -> str:
    """A samples/s figure as printed: one decimal below 10 (a CNN epoch of 8 samples at 0.2/s is not '0')."""
    return f"{sps:.1f}" if sps < 10 else f"{sps:.0f}"


def json_text(d) -> str:
    """``d`` as strict JSON: NaN and infinities (e.g. a loss that is undefined for a --t-max) become null."""
    import math

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(d), allow_nan=False)


def _print_curve(res):
    """The accuracy-vs-inference-time line of ``pysrm eval``."""
    step = max(1, len(res.times) // 10)
    click.echo("  accuracy vs inference time: " + ", ".join(
        f"{t:.0f} ms {100 * a:.0f}%" for t, a in zip(res.times[step - 1::step], res.accuracy_curve[step - 1::step])))


def _print_summary(rep: dict, saved: bool = True, note: str | None = None, title: str | None = None):
    t = rep["test"]
    lat = t["latency_ms"]
    lat_s = ", ".join(f"{int(float(k) * 100)}%: {'-' if v is None else f'{v:.0f} ms'}" for k, v in lat.items())
    click.echo("\n" + (title or f"Run {rep['run_dir']} (seed {rep['seed']})") + (f" -- {note}" if note else ""))
    click.echo(f"  test accuracy      {100 * t['accuracy']:.2f} % ({t['n_samples']} samples)")
    click.echo(f"  latency            {lat_s} (time to reach that fraction of the final accuracy)")
    click.echo("  spikes per sample  " + ", ".join(f"{k} {v:.1f}" for k, v in t["spike_counts_per_layer"].items()))
    if saved:
        click.echo(f"  saved in           {rep['run_dir']} (config.toml, metrics.jsonl, checkpoints/, report.json)")


@main.command("eval")
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--data-dir", default=None, help="dataset folder (default: the one the run used)")
@click.option("--t-max", type=POSITIVE, default=None,
              help="length of the simulated test samples in ms (default: the run's test_t_sample or t_sample)")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="last", show_default=True,
              help="'last' is the final network (the one report.json describes); 'best' is selected on the "
                   "validation split, or on the test set when the run had none")
@click.option("--device", type=click.Choice(DEVICE_CHOICES), default="cpu", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
@nir_eval_options
def eval_cmd(run_dir, data_dir, t_max, checkpoint, device, as_json, **nir_opts):
    """Test accuracy, latency curve and spike counts of a saved network (or, with --nir, of a NIR graph)."""
    if nir_opts["nir_file"] is not None or run_dir is None:
        return eval_nir(run_dir, data_dir, t_max, device, as_json, **nir_opts)
    from pysrm.backend import resolve_device
    from pysrm.train import (_device_message, build_loss, check_empty_samples, evaluate, load_data, load_run,
                             test_sim_params)
    try:
        from pysrm.config import TrainConfig as _C
        if not (Path(run_dir) / "config.toml").exists():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.toml)")
        cfg = _C.from_toml(Path(run_dir) / "config.toml")
        if data_dir:
            cfg = cfg.updated({"data_dir": data_dir})
        if t_max is not None:
            cfg = cfg.updated({"test_t_sample": t_max})
        try:  # every setting the evaluation uses, checked before any sample is read (not the test loss: below)
            cfg.validate(test_loss=False)
        except ValueError as e:
            if t_max is not None and "test_t_sample" in str(e):
                raise ValueError(f"--t-max {t_max:g}: {e}") from None
            raise
        sim = test_sim_params(cfg)
        dev = resolve_device(device)
        if device == "auto" or dev == "cuda":
            click.echo(_device_message(device, dev), err=True)
        if checkpoint == "best" and not (Path(run_dir) / "checkpoints" / "best.npz").exists():
            click.echo(f"note: {run_dir} kept no best checkpoint (no test or validation evaluation selected one); "
                       f"evaluating the last", err=True)
        _, net = load_run(run_dir, sim=sim, checkpoint=checkpoint, device=dev)
        _, _, test = load_data(cfg, test_sim=sim)
        test = check_empty_samples(test, "test", cfg.empty_samples, lambda m: click.echo(m, err=True))
        # a --t-max shorter than the spikemax window (or a num-spikes t_stop) leaves the loss undefined (reported as
        # NaN), not the accuracy
        loss = build_loss(cfg)
        try:
            loss.check_simulation(sim, "--t-max" if t_max is not None else "test_t_sample", training=False)
        except ValueError:
            loss = None
        res = evaluate(net, test, cfg, loss)
    except (ValueError, TypeError, FileNotFoundError, RuntimeError, ImportError) as e:
        _fail(e)
    d = res.to_dict()
    if as_json:
        click.echo(json_text(d))
        return
    _print_summary({"run_dir": run_dir, "seed": cfg.seed, "test": d}, saved=False)  # eval writes nothing
    _print_curve(res)


@main.command()
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--out", "out_dir", default="report", show_default=True, type=OutputDir(),
              help="folder for table.md/csv and figures (owned by this command while it writes)")
def report(run_dirs, out_dir):
    """Aggregate runs (or folders of runs) into Table I and the paper's figures.

    Runs of one experiment are its trials (mean ± std over their seeds); runs that repeat a seed of
    the same experiment (the same command run twice) count once, the most recent, and are listed
    under the table.
    """
    from pysrm.report import make_report
    try:
        res = make_report(run_dirs, out_dir)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as e:
        _fail(e)
    click.echo(res["markdown"])
    repeats = f" (and {len(res['repeats'])} repeated run(s) not counted, listed above)" if res["repeats"] else ""
    click.echo(f"{res['n_runs']} runs{repeats} -> {out_dir}/table.md, {out_dir}/table.csv")
    if res["figures"]:
        click.echo("figures: " + ", ".join(res["figures"]))
    else:
        click.echo("figures skipped: matplotlib is not installed (pip install \".[plot]\" in a clone of pysrm, or pip install matplotlib)")


@main.command()
@click.option("--dtype", type=click.Choice(["float64"]), default="float64", show_default=True,
              help="precision of the checks (finite differences need float64)")
@click.option("--seed", type=NON_NEGATIVE_INT, default=0, show_default=True)
def gradcheck(dtype, seed):
    """Finite-difference checks of every op and loss; non-zero exit on failure."""
    from pysrm.gradcheck import format_table, run_all
    results = run_all(seed)
    click.echo(format_table(results))
    failed = [r for r in results if not r.passed]
    click.echo(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        sys.exit(1)


@main.command()
@click.option("--quick", is_flag=True, help="fewer cases and steps (a few minutes)")
@click.option("--out", "out_prefix", default=None, metavar="PREFIX", type=OutputPrefix((".md", ".json")),
              help="also write the results to PREFIX.md and PREFIX.json")
@click.option("--nmnist-small", type=click.Path(file_okay=False), default=None,
              help="SLAYER's NMNISTsmall folder (<id>.bs2, train1K.txt) for the nmnist-dense, nmnist-cnn and "
                   "memory cases; default $PYSRM_NMNIST_SMALL")
@click.option("--ntidigits-sample", type=click.Path(dir_okay=False), default=None,
              help="an N-TIDIGITS sample in SLAYER's .bs1 format for the ntidigits case; default "
                   "$PYSRM_NTIDIGITS_SAMPLE")
@click.option("--only", default=None, help="comma-separated cases to run, e.g. nmnist-dense,t-scaling")
def bench(quick, out_prefix, nmnist_small, ntidigits_sample, only):
    """Speed benchmarks: samples/s, compile time, peak memory.

    Cases: nmnist-dense, nmnist-cnn, memory (need NMNISTsmall), ntidigits (needs an N-TIDIGITS .bs1
    sample), t-scaling and dvs-gesture (synthetic inputs, no data).  Data locations: the options
    above, else the environment variables PYSRM_NMNIST_SMALL and PYSRM_NTIDIGITS_SAMPLE, else (in a
    source checkout) ../shared/data/NMNISTsmall and ../shared/data/slayer_formats/NTIDIGITS_1.bs1
    next to it, else $PYSRM_DATA_DIR/NMNISTsmall and $PYSRM_DATA_DIR/NTIDIGITS_1.bs1 (PYSRM_DATA_DIR
    defaults to ~/.pysrm/data).  A case whose data is missing is skipped with a message; the others run.
    """
    from pysrm.bench import main as bench_main
    argv = (["--quick"] if quick else []) + (["--out", out_prefix] if out_prefix else [])
    for opt, v in (("--nmnist-small", nmnist_small), ("--ntidigits-sample", ntidigits_sample), ("--only", only)):
        if v:
            argv += [opt, v]
    sys.exit(bench_main(argv))


main.add_command(data_group)
main.add_command(sweep_cmd)
main.add_command(export_cmd)


if __name__ == "__main__":  # pragma: no cover
    main()
