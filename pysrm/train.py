"""The training and evaluation pipeline behind ``pysrm train`` / ``eval``.

One function, :func:`train`, runs a whole experiment from a
:class:`~pysrm.config.TrainConfig` and writes a run directory::

    RUN_DIR/config.toml        fully resolved config (+ [versions])
    RUN_DIR/metrics.jsonl      one JSON line per epoch; "epoch" counts from 1, as the screen does
                               (files of older versions counted from 0: resume converts them)
    RUN_DIR/checkpoints/last.npz, best.npz
                               all parameters + optimiser state + RNG states
                               (written atomically: temporary file, then rename)
    RUN_DIR/report.json        final accuracy, accuracy-versus-inference-time curve,
                               latency, spike counts per layer per sample

``last.npz`` is written after every epoch and when the run is interrupted
(Ctrl-C) -- then with the position inside the epoch, so ``--resume`` continues
from exactly that batch and gives the same final parameters as an
uninterrupted run with the same seed.  ``--resume RUN --epochs N`` extends a
run to N epochs (the learning-rate schedule and the data order continue as if
the run had been started with N epochs); resuming a finished run without a
larger ``--epochs`` raises :class:`RunFinished`.

An existing run directory is never overwritten: :func:`train` refuses a
non-empty ``run_dir`` unless ``overwrite=True`` (then the old run's files are
removed, after the new run's config and data have been checked).  Everything
that can be checked before training is checked before the run directory is
made (config, network against dataset, jitter, empty samples); a run that
fails before its first checkpoint removes the directory it made.

A run directory is owned by one process at a time (:class:`pysrm.rundir.DirLock`
on ``RUN_DIR/.lock``, taken before anything is checked or written): a second
``train`` or ``--resume`` of it is refused at once, naming the holder, and a
refused or failed run removes only what it made itself.  Ctrl-C is acknowledged
at once and honoured at the next safe point of every phase (``_StopFlag``):
batches, the epoch's evaluation, the final evaluation, the report.
"""
from __future__ import annotations

import json
import math
import os
import platform
import shutil
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__, settings
from .backend import resolve_device
from .classifier import accuracy_vs_time, latency, predict, spike_counts_per_layer
from .config import TrainConfig, dump_toml
from .layers import Dropout
from .losses import make_loss
from .network import Network
from .optim import make_optimizer
from .params import NeuronParams, SimParams
from .rundir import LOCK_NAME, DirLock, ensure_not_in_use

LATENCY_FRACTIONS = (0.9, 0.95, 0.99)


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C once the checkpoint is safely written.

    ``where``: where the run stopped (for the message); ``complete``: the run had already written its
    report when the stop was honoured (nothing to resume).
    """

    def __init__(self, run_dir, where: str = "", complete: bool = False):
        if complete:
            text = (f"training stopped (Ctrl-C) {where or 'at its end'}; the run is complete (report.json written "
                    f"in {run_dir}), nothing to resume")
        else:
            text = (f"training interrupted{' ' + where if where else ''}; checkpoint saved in {run_dir}. Resume "
                    f"with: pysrm train --resume {run_dir}")
        super().__init__(text)
        self.run_dir, self.where, self.complete = run_dir, where, complete


class TrainingAborted(KeyboardInterrupt):
    """Ctrl-C during start-up, or a second Ctrl-C: stopped at once, without saving anything more.

    ``run_dir``; ``checkpoint``: what its last checkpoint holds (:meth:`RunDir.describe`), ``None``
    when there is none (a new run that had not finished its first epoch leaves no run directory).
    """

    def __init__(self, run_dir, checkpoint: str | None, resume: bool = False):
        if checkpoint is None and resume:
            text = (f"interrupted while resuming {run_dir}; it is as it was. Resume it with: pysrm train --resume "
                    f"{run_dir}")
        elif checkpoint is None:
            text = f"interrupted before the first epoch ended; nothing was saved ({run_dir} removed)"
        else:
            text = (f"aborted (Ctrl-C); nothing more was saved, {run_dir} keeps its last checkpoint ({checkpoint}). "
                    f"Resume with: pysrm train --resume {run_dir}")
        super().__init__(text)
        self.run_dir, self.checkpoint = run_dir, checkpoint


class RunFinished(Exception):
    """``train(..., resume=True)`` on a run that has already trained all its epochs (and written report.json).

    ``epochs``: the epochs it trained; ``report``: its report.json.  Not an error: pass a larger
    ``epochs`` to train it further.
    """

    def __init__(self, run_dir, epochs: int, report: dict | None = None):
        super().__init__(f"{run_dir} is already finished: it trained all {epochs} epochs of its config and wrote "
                         f"report.json; nothing to resume. To train it further pass a larger epoch count: "
                         f"pysrm train --resume {run_dir} --epochs N (N > {epochs})")
        self.run_dir, self.epochs, self.report = run_dir, epochs, report


# ---------------------------------------------------------------------------------------------- building
def neuron_params(cfg: TrainConfig) -> NeuronParams:
    return NeuronParams(theta=cfg.theta, tau_sr=cfg.tau_sr, tau_ref=cfg.tau_ref, scale_ref=cfg.scale_ref,
                        tau_rho=cfg.tau_rho, scale_rho=cfg.scale_rho)


def sim_params(cfg: TrainConfig) -> SimParams:
    return SimParams(ts=cfg.ts, t_sample=cfg.t_sample)


def test_sim_params(cfg: TrainConfig) -> SimParams:
    """Simulation of the test split: ``test_t_sample`` ms when set (DVS Gesture tests on 1.5 s), else t_sample."""
    return SimParams(ts=cfg.ts, t_sample=cfg.test_t_sample or cfg.t_sample)


def build_network(cfg: TrainConfig, sim: SimParams | None = None) -> Network:
    return Network.from_string(cfg.net, neuron_params(cfg), sim or sim_params(cfg), delays=cfg.delays,
                               dropout=cfg.dropout, seed=cfg.seed, dense_weight_scale=cfg.dense_weight_scale,
                               conv_weight_scale=cfg.conv_weight_scale, memory_budget=int(cfg.memory_gb * 2 ** 30),
                               srm_tolerance=cfg.response_tolerance, ref_tolerance=cfg.response_tolerance)


def build_loss(cfg: TrainConfig):
    """The loss of ``cfg`` with only the options that loss takes."""
    opts = {"grad": cfg.grad}
    if cfg.loss == "spike-rate":
        opts.update(true_rate=cfg.true_rate, false_rate=cfg.false_rate)
    elif cfg.loss in ("spikemax", "spikemax-g"):
        if cfg.loss == "spikemax":
            opts["window"] = cfg.window
        if cfg.eps is not None:
            opts["eps"] = cfg.eps
    elif cfg.loss == "num-spikes":
        opts.update(neuron=neuron_params(cfg), sim=sim_params(cfg),
                    true_count=cfg.true_count if cfg.true_count is not None else cfg.true_rate * cfg.t_sample,
                    false_count=cfg.false_count if cfg.false_count is not None else cfg.false_rate * cfg.t_sample)
    return make_loss(cfg.loss, ts=cfg.ts, **opts)


class Subset:
    """The samples ``indices`` of a dataset (same interface as the dataset)."""

    def __init__(self, ds, indices):
        self.ds = ds
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = np.asarray(ds.labels)[self.indices]

    def __len__(self):
        return len(self.indices)

    def __getattr__(self, name):
        return getattr(self.ds, name)

    def events(self, i, *args, **kwargs):
        return self.ds.events(int(self.indices[i]), *args, **kwargs)

    def sample(self, i, *args, **kwargs):
        return self.ds.sample(int(self.indices[i]), *args, **kwargs)

    def sample_batch(self, indices, *args, **kwargs):
        return self.ds.sample_batch([int(self.indices[i]) for i in indices], *args, **kwargs)

    def sample_name(self, i) -> str:
        return self.ds.sample_name(int(self.indices[i]))


def load_data(cfg: TrainConfig, sim: SimParams | None = None, test_sim: SimParams | None = None):
    """``(train, validation or None, test)`` datasets of ``cfg`` (the test split simulated with ``test_sim``)."""
    from .data import load_dataset
    sim = sim or sim_params(cfg)
    test_sim = test_sim or test_sim_params(cfg)
    train_opts, test_opts = {}, {}
    if cfg.dataset == "nmnist":
        if cfg.train_list:
            train_opts["list_file"] = cfg.train_list
        if cfg.test_list:
            test_opts["list_file"] = cfg.test_list
    if cfg.dataset == "synthetic":
        train_opts["seed"] = test_opts["seed"] = 0  # the embedded dataset is fixed; cfg.seed seeds training
        if cfg.n_train is not None:
            train_opts["n_samples"] = cfg.n_train
        if cfg.n_test is not None:
            test_opts["n_samples"] = cfg.n_test
    train = load_dataset(cfg.dataset, split="train", data_dir=cfg.data_dir, sim=sim, **train_opts)
    test = load_dataset(cfg.dataset, split="test", data_dir=cfg.data_dir, sim=test_sim, **test_opts)
    if cfg.n_train is not None and len(train) > cfg.n_train:
        train = Subset(train, np.arange(cfg.n_train))
    if cfg.n_test is not None and len(test) > cfg.n_test:
        test = Subset(test, np.arange(cfg.n_test))
    val = None
    if cfg.val_split > 0:
        perm = np.random.default_rng(12345).permutation(len(train))  # fixed split, independent of the seed
        n_val = max(1, int(round(cfg.val_split * len(train))))
        if n_val >= len(train):
            raise ValueError(f"val_split {cfg.val_split:g} of {len(train)} training sample(s) holds out {n_val} and "
                             f"leaves no sample to train on; expected a smaller val_split or more training samples")
        val = Subset(train, np.sort(perm[:n_val]))
        train = Subset(train, np.sort(perm[n_val:]))
    return train, val, test


def _empty_positions(ds, positions=None) -> list:
    """Positions (among ``positions``, default all) of the samples of ``ds`` that bin to nothing.

    Parses each sample asked about once; the parsed events stay cached for training.
    """
    if isinstance(ds, Subset):
        pos = np.arange(len(ds)) if positions is None else np.asarray(positions, dtype=np.int64)
        inner = ds.indices[pos]
        empty = set(_empty_positions(ds.ds, inner))
        return [int(p) for p, i in zip(pos, inner) if int(i) in empty]
    if not hasattr(ds, "empty_samples"):
        return []
    return [int(i) for i in ds.empty_samples(positions)]


def _time_report(ds, split: str):
    """The dataset's :meth:`~pysrm.data.base.EventDataset.time_report` over the samples of ``ds`` (None: none)."""
    idx, d = None, ds
    while isinstance(d, Subset):  # a Subset (of a Subset ...): its samples' indices in the dataset
        idx, d = d.indices if idx is None else d.indices[idx], d.ds
    return d.time_report(idx, split) if hasattr(d, "time_report") else None


def check_empty_samples(ds, split: str, policy: str, message=None):
    """``ds`` without its empty samples (policy ``'skip'``, counted in a message), or ``ValueError`` (``'error'``).

    A sample is empty when the network would see it as all zeros: no event inside the sensor, or no
    event inside the simulated window (``t_sample`` ms from its start; e.g. absolute timestamps).
    Every sample is parsed here, once, before training starts (an empty sample used to abort training
    when it was first drawn, mid-epoch, or to train on zeros).  Event times that most likely have the
    wrong unit or origin (most events cropped, or most samples in a single time bin) are reported: in
    the error, or as a ``'warning: ...'`` message.  Returns ``ds`` unchanged when no sample is empty.
    """
    if ds is None:
        return None
    empty = _empty_positions(ds)
    report = _time_report(ds, split)
    if not empty:
        if report and message is not None:
            message(f"warning: {report}")
        return ds
    names = [ds.sample_name(i) for i in empty[:3]]
    no_event = sum(ds.events(i, allow_empty=True).size == 0 for i in empty)  # the others: events outside the window
    where = ("inside the sensor" if no_event == len(empty) else
             f"inside the simulated window (t = 0 .. {ds.sim.t_sample:g} ms)" if no_event == 0 else
             f"inside the sensor ({no_event}) or the simulated window (t = 0 .. {ds.sim.t_sample:g} ms; "
             f"{len(empty) - no_event})")
    what = (f"{len(empty)} of {len(ds)} {split} sample(s) have no event {where}, e.g. " + "; ".join(names)
            + (f" ({report})" if report else ""))
    if policy == "skip":
        if len(empty) == len(ds):
            raise ValueError(what + f"; that is every {split} sample, nothing would be left")
        if message is not None:
            message(f"skipping {what} (empty_samples = 'skip')")
        return Subset(ds, np.setdiff1d(np.arange(len(ds)), np.asarray(empty)))
    raise ValueError(what + "; a network cannot learn from or be tested on them. Remove them from the dataset, "
                     "or pass --empty-samples skip (empty_samples = \"skip\") to leave them out with a count")


def jitter_loss(jitter: int, shape) -> float:
    """Expected fraction of events that a jitter of up to ``jitter`` px moves off a ``(C, H, W)`` sensor.

    Shifts are uniform in ``[-jitter, jitter]`` per axis (as the data loader draws them); events
    are taken as uniform over the sensor, so the figure is an estimate (centred objects lose fewer).
    """
    if not jitter:
        return 0.0
    d = np.arange(-jitter, jitter + 1)

    def keep(n):
        return float(np.maximum(0, n - np.abs(d)).sum()) / (n * d.size)
    return 1.0 - keep(int(shape[-1])) * keep(int(shape[-2]))


#: a jitter expected to move more than this fraction of the events off the sensor is an error
MAX_JITTER_LOSS = 0.5


def check_jitter(cfg: TrainConfig, ds):
    """Refuse a jitter that would move most events off the sensor (e.g. 50 px on a 16x16 sensor)."""
    if not cfg.jitter:
        return
    shape = tuple(getattr(ds, "native_shape", ds.sensor_shape))
    lost = jitter_loss(cfg.jitter, shape)
    if lost > MAX_JITTER_LOSS:
        ok = max([j for j in range(0, max(shape[-2:]) + 1) if jitter_loss(j, shape) <= MAX_JITTER_LOSS])
        raise ValueError(f"jitter {cfg.jitter} px would move about {100 * lost:.0f} % of the events off the "
                         f"{shape[-2]}x{shape[-1]} sensor of dataset {cfg.dataset!r} (shifts uniform in "
                         f"[-{cfg.jitter}, {cfg.jitter}] px); expected jitter <= {ok} px (at most half the events "
                         f"lost), e.g. 2 for N-MNIST")




def make_loader(ds, cfg: TrainConfig, shuffle: bool, augment: bool, batch_size: int | None = None,
                prefetch: int = 0):
    from .data import DataLoader
    kwargs = {}
    if augment and cfg.jitter:
        kwargs["jitter"] = cfg.jitter
    return DataLoader(ds, batch_size=batch_size or cfg.batch_size, shuffle=shuffle, seed=cfg.seed,
                      augment=augment and cfg.jitter > 0, prefetch=prefetch, **kwargs)


# -------------------------------------------------------------------------------------------- evaluation
@dataclass
class EvalResult:
    accuracy: float
    loss: float
    times: np.ndarray
    accuracy_curve: np.ndarray
    spike_counts: dict
    n_samples: int

    def latency(self, fraction: float = 0.99) -> float:
        return latency(self.times, self.accuracy_curve, fraction)

    def to_dict(self) -> dict:
        return {
            "accuracy": self.accuracy, "loss": self.loss, "n_samples": self.n_samples,
            "accuracy_vs_time": {"time_ms": [float(t) for t in self.times],
                                 "accuracy": [float(a) for a in self.accuracy_curve]},
            "latency_ms": {f"{f:g}": _finite(self.latency(f)) for f in LATENCY_FRACTIONS},
            "spike_counts_per_layer": {k: float(v) for k, v in self.spike_counts.items()},
        }


def _finite(v):
    return None if v is None or not math.isfinite(v) else float(v)


class _EvalStopped(Exception):
    """An evaluation stopped between two batches because a stop was requested (Ctrl-C)."""


def evaluate(net: Network, ds, cfg: TrainConfig, loss=None, batch_size: int | None = None,
             stop=None) -> EvalResult:
    """Accuracy, loss, accuracy-vs-inference-time and spike counts of ``net`` on ``ds``.

    ``stop``: a ``_StopFlag``; when it is set, before any batch, the evaluation raises
    ``_EvalStopped`` (what :func:`train` passes, so that Ctrl-C never waits for a long evaluation).
    """
    if batch_size is None:
        # dense networks evaluate faster in larger batches; a conv network's per-sample memory is large, so it
        # evaluates at its training batch size (memory of the N-MNIST CNN at 64: 1.4 GB)
        from .layers import Conv
        has_conv = any(isinstance(l, Conv) for l in net.layers)
        batch_size = cfg.batch_size if has_conv else max(cfg.batch_size, 64)
    loader = make_loader(ds, cfg, shuffle=False, augment=False, batch_size=batch_size)
    n = 0
    correct = 0
    loss_sum = 0.0
    curve = None
    counts: dict = {}
    times = None
    with net.inference():
        for x, y in loader:
            if stop is not None and stop.requested:
                raise _EvalStopped()
            out = net.forward(x, train=False)
            b = len(y)
            correct += int((predict(out) == y).sum())
            if loss is not None:
                loss_sum += loss.value(out, y) * b
            times, acc = accuracy_vs_time(out, y, net.sim.ts)
            curve = acc * b if curve is None else curve + acc * b
            for name, c in spike_counts_per_layer(net.recorded_spikes, net.sim.ts).items():
                counts[name] = counts.get(name, 0.0) + c * b
            n += b
    if n == 0:
        raise ValueError("evaluation dataset is empty")
    return EvalResult(correct / n, loss_sum / n if loss is not None else float("nan"), np.asarray(times),
                      curve / n, {k: v / n for k, v in counts.items()}, n)


# ----------------------------------------------------------------------------------------- run directory
def versions() -> dict:
    import numba
    import scipy
    return {"pysrm": __version__, "numpy": np.__version__, "numba": numba.__version__, "scipy": scipy.__version__,
            "python": platform.python_version()}


def _atomic_savez(path: Path, arrays: dict):
    """Write ``arrays`` to ``path`` atomically: a temporary file in the same folder, fsync, then rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # one per process: never another writer's
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # left only when writing failed (or a second Ctrl-C aborted it)


def _rng_states(net: Network) -> list:
    return [l.rng.bit_generator.state for l in net.layers if isinstance(l, Dropout)]


def _set_rng_states(net: Network, states: list):
    for l, s in zip([l for l in net.layers if isinstance(l, Dropout)], states):
        l.rng.bit_generator.state = s


def save_checkpoint(path: Path, net: Network, opt, meta: dict):
    arrays = {f"param/{k}": v for k, v in net.state_dict().items()}
    arrays.update({f"optim/{k}": v for k, v in opt.state_dict().items()})
    meta = dict(meta, rng_states=_rng_states(net))
    arrays["meta"] = np.array(json.dumps(meta))
    _atomic_savez(path, arrays)


def load_checkpoint(path: Path, net: Network, opt=None) -> dict:
    """Load parameters (and optimiser state) from ``path``; returns the metadata."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as e:  # a truncated or foreign file
        raise ValueError(f"checkpoint {path} cannot be read ({e}); expected a pysrm .npz checkpoint") from None
    net.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("param/")})
    meta = json.loads(str(data["meta"]))
    if opt is not None:
        opt.load_state_dict({k[6:]: v for k, v in data.items() if k.startswith("optim/")})
    _set_rng_states(net, meta.get("rng_states", []))
    return meta


#: what a run directory holds (``overwrite`` removes exactly these; anything else makes it refuse)
RUN_ENTRIES = ("config.toml", "metrics.jsonl", "report.json", "report.json.tmp", "checkpoints", "error.txt")


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self.ckpt = self.path / "checkpoints"

    def create(self, cfg: TrainConfig):
        self.ckpt.mkdir(parents=True, exist_ok=True)
        self.write_config(cfg)

    def write_config(self, cfg: TrainConfig):
        (self.path / "config.toml").write_text(dump_toml({**cfg.to_dict(), "versions": versions()}))

    @property
    def config_path(self):
        return self.path / "config.toml"

    def append_metrics(self, row: dict):
        with open(self.path / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")

    def metrics(self) -> list:
        """The rows of metrics.jsonl with ``epoch`` counted from 1 (rows of older files, counted from 0, converted)."""
        p = self.path / "metrics.jsonl"
        if not p.exists():
            return []
        rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
        if rows and min(r["epoch"] for r in rows) == 0:  # written before epochs counted from 1
            rows = [dict(r, epoch=r["epoch"] + 1) for r in rows]
        return rows

    def truncate_metrics(self, n_epochs: int):
        """Keep only the rows of epochs 1..``n_epochs`` (a resumed run rewrites later epochs); rewrites
        older files with epochs counted from 1."""
        rows = [r for r in self.metrics() if r["epoch"] <= n_epochs]
        (self.path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    def write_report(self, report: dict):
        tmp = self.path / f".report.json.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(report, indent=1))
            os.replace(tmp, self.path / "report.json")
        finally:
            tmp.unlink(missing_ok=True)

    def describe(self) -> str:
        """'finished, 4 epochs' / 'interrupted in epoch 3' / 'no checkpoint', for messages."""
        meta = read_checkpoint_meta(self.ckpt / "last.npz")
        if meta is None:
            return "no checkpoint"
        if meta.get("evaluating"):
            return f"interrupted in epoch {meta['epoch'] + 1}, after its last batch, before its evaluation"
        if meta.get("batch", 0) == 0:
            state = "finished" if (self.path / "report.json").exists() else "stopped"
            return f"{state} after {meta['epoch']} epoch(s)"
        return f"interrupted in epoch {meta['epoch'] + 1}, batch {meta['batch'] + 1}"


def read_checkpoint_meta(path) -> dict | None:
    """The metadata of checkpoint ``path`` (``epoch`` done, ``batch`` inside the next one, ``best``...), or None."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return json.loads(str(z["meta"]))
    except Exception as e:
        raise ValueError(f"checkpoint {path} cannot be read ({e}); expected a pysrm .npz checkpoint") from None


def check_new_run_dir(path, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` when ``path`` may not receive a new run.

    A missing or empty folder is fine.  A run directory (one with config.toml or checkpoints/) is
    refused unless ``overwrite``; a folder holding anything else is always refused (``overwrite``
    deletes run files only, never a folder of other files).
    """
    path = Path(path)
    if not path.exists():
        return
    if not path.is_dir():
        raise FileExistsError(f"run directory {path} exists and is not a folder; choose another --out")
    entries = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)  # the lock: its owner's, not a run
    if not entries:
        return
    foreign = [e for e in entries if e not in RUN_ENTRIES and not e.startswith(".")]
    if foreign:
        raise FileExistsError(f"{path} is not empty and is not a run directory (it holds {', '.join(foreign[:5])}"
                              f"{' ...' if len(foreign) > 5 else ''}); choose another --out (a new folder)")
    if not overwrite:
        raise FileExistsError(f"{path} already holds a run ({RunDir(path).describe()}); it is not overwritten. "
                              f"Continue it with --resume {path} (and --epochs N to train it longer), replace it "
                              f"with --overwrite, or choose another --out")


def remove_run_files(path) -> None:
    """Delete the files of the run in ``path`` (only :data:`RUN_ENTRIES`; see :func:`check_new_run_dir`)."""
    path = Path(path)
    for name in RUN_ENTRIES:
        p = path / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def default_run_dir(cfg: TrainConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{cfg.dataset.replace(':', '-')}_{cfg.loss}_seed{cfg.seed}_{stamp}"


# ------------------------------------------------------------------------------------------------ train
class _StopFlag:
    """Turns the first Ctrl-C into a request to stop at the next safe point (a second one aborts).

    The safe points: every batch boundary, every batch of an evaluation (the epoch's validation and
    test evaluation, the final one), and the end of the run; a checkpoint or report being written is
    finished first.  ``phase`` (set by :func:`train` as it goes) says what the run is doing; the
    request is acknowledged at once through ``notify(text)`` (text: what happens next), and the run
    raises :class:`TrainingInterrupted` at the safe point.
    """

    #: what happens after a Ctrl-C in each phase
    NEXT = {
        "batches": "saving a checkpoint after the current batch",
        "evaluation": "stopping this evaluation and saving a checkpoint after the epoch's last batch (--resume "
                      "evaluates the epoch again and goes on)",
        "checkpoint": "finishing the checkpoint being written, then stopping",
        "final": "stopping the final evaluation; every epoch is checkpointed and --resume writes the report",
        "report": "finishing report.json (being written), then stopping; the run is complete",
        "done": "the run is complete (report.json written); stopping",
    }

    def __init__(self, notify=None):
        self.requested = False
        self.phase = "start-up"  # before the first batch: Ctrl-C stops at once (KeyboardInterrupt)
        self.notify = notify
        self._old = None
        self._depth = 0

    def __enter__(self):
        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.phase == "start-up":  # nothing to save yet: stop now, as Python's own handler would
            raise KeyboardInterrupt
        self.requested = True
        signal.signal(signal.SIGINT, self._old or signal.default_int_handler)
        text = (f"stop requested (Ctrl-C): {self.NEXT.get(self.phase, 'stopping at the next safe point')}; "
                f"Ctrl-C again aborts without saving")
        if self.notify is not None:
            self.notify(text)
        else:  # os.write: safe inside a signal handler, whatever the main thread was printing
            os.write(2, ("\n" + text + "\n").encode())

    def __exit__(self, *exc):
        self._depth -= 1
        if self._depth == 0 and self._old is not None:
            signal.signal(signal.SIGINT, self._old)
            self._old = None
        return False


class _Progress:
    """Default no-op progress sink; the CLI passes a bar.

    ``start_epoch`` gets the 0-based epoch index, ``end_epoch`` the metrics row (epoch counted from
    1); ``start_trial(k, n, seed)`` (k from 1) comes before each run of :func:`train_trials`;
    ``start_eval(what, n_samples)`` before each evaluation ('validation', 'test', 'final test');
    ``stop_requested(text)`` acknowledges a Ctrl-C (it runs inside the signal handler).  Sinks
    without the last two are fine: :func:`train` looks them up with ``getattr``.
    """

    def start_trial(self, k, n, seed): ...
    def start_epoch(self, epoch, epochs, n_batches): ...
    def batch(self, done, n_batches, loss, acc, samples_per_s): ...
    def end_epoch(self, row): ...
    def message(self, text): ...
    def start_eval(self, what, n_samples): ...

    def stop_requested(self, text):
        """Say that Ctrl-C was received (called inside the signal handler: writes with os.write)."""
        os.write(2, ("\n" + text + "\n").encode())


def _device_message(requested: str, device: str) -> str:
    if device == "cuda":
        try:
            from numba import cuda
            name = cuda.get_current_device().name
            name = name.decode() if isinstance(name, bytes) else str(name)
        except Exception:  # pragma: no cover - depends on the machine
            name = "CUDA GPU"
        return f"device {requested}: using cuda ({name})"
    return f"device {requested}: using cpu" + (" (no usable CUDA GPU found)" if requested == "auto" else "")


def train(cfg: TrainConfig, run_dir=None, resume: bool = False, progress=None, stop_after_batches=None,
          overwrite: bool = False, epochs: int | None = None, device: str | None = None,
          overrides: dict | None = None) -> dict:
    """Train ``cfg`` into ``run_dir``; returns the report dict (also written to report.json).

    The run directory is owned by this call while it runs (:class:`pysrm.rundir.DirLock`): another
    process training, resuming or reporting into it is refused at once
    (:class:`pysrm.rundir.DirectoryInUse`, naming the holder), and this call is refused the same way
    while another process owns it.  Without ``run_dir`` and ``cfg.out`` the run goes to a new folder
    :func:`default_run_dir` (``_2``, ``_3``... appended when that name is taken).

    Ctrl-C (SIGINT in the main thread) is acknowledged at once and honoured at the next safe point of
    whatever the run is doing (see ``_StopFlag``): :class:`TrainingInterrupted` is raised once a
    checkpoint that ``resume=True`` continues exactly has been written (``complete=True`` when the run
    had already written its report); during start-up, or at a second Ctrl-C, :class:`TrainingAborted`
    (a ``KeyboardInterrupt``) is raised at once.

    ``resume=True`` continues from ``run_dir/checkpoints/last.npz`` (the config is read from the run
    directory; ``cfg`` is ignored); ``epochs`` then extends the run to that many epochs in all (the
    schedule continues; its config.toml is updated) and ``device`` moves it to another device.  A
    finished run resumed without a larger ``epochs`` raises :class:`RunFinished`; ``epochs`` below
    the epochs already trained is a ``ValueError``.  ``overrides`` (resume only) changes the run's
    evaluation settings :data:`RESUME_OVERRIDES` (e.g. ``{"test_t_sample": 20.0}``, to finish a run
    whose saved test settings no longer validate); they do not change the trained parameters.

    A new run refuses an existing, non-empty ``run_dir`` (``FileExistsError``) unless ``overwrite``;
    see :func:`check_new_run_dir`.  ``stop_after_batches`` simulates an interruption after that many
    batches in total (used by tests; behaves like Ctrl-C).
    """
    progress = progress or _Progress()
    if resume:
        lock = (DirLock(run_dir, hint=f"wait until it ends before resuming {run_dir}") if Path(run_dir).is_dir()
                else None)  # no folder: _train_owned says that there is nothing to resume
    elif run_dir is not None or cfg.out:
        lock = DirLock(run_dir if run_dir is not None else cfg.out,
                       hint="wait until it ends, or choose another --out")
    else:
        lock = _claim_default_run_dir(cfg)
    stop = _StopFlag(getattr(progress, "stop_requested", None))
    try:
        with stop:
            if lock is not None:
                lock.acquire()
            report = _train_owned(cfg, run_dir if lock is None else lock.path, resume, progress, stop_after_batches,
                                  overwrite, epochs, device, stop, overrides=overrides)
    except _EvalStopped:
        raise TrainingInterrupted(lock.path, "during the final evaluation (every epoch is trained and "
                                             "checkpointed; resuming writes the report)") from None
    except KeyboardInterrupt as e:
        if isinstance(e, TrainingAborted) or lock is None or not lock.held:
            raise
        rd = RunDir(lock.path)
        last = rd.ckpt / "last.npz"
        raise TrainingAborted(rd.path, rd.describe() if last.exists() else None, resume) from None
    finally:
        if lock is not None:
            lock.release()
            lock.remove_created()  # only the folders this call made, and only when empty
    if stop.requested:  # Ctrl-C while the report was written: the run is complete, still say it stopped
        raise TrainingInterrupted(report["run_dir"], "while writing its report", complete=True)
    return report


#: settings that ``train(..., resume=True, overrides=...)`` (``pysrm train --resume RUN --test-t-sample MS``)
#: may change: they only decide how the run is evaluated, not what it trains
RESUME_OVERRIDES = ("test_t_sample", "test_every")


def _claim_default_run_dir(cfg: TrainConfig) -> DirLock:
    """A lock on a new folder :func:`default_run_dir` (acquired), with ``_2``, ``_3``... appended when the
    name is taken (two runs started in the same second, by one user or two)."""
    base = default_run_dir(cfg)
    for k in range(1, 10_000):
        path = base if k == 1 else base.with_name(f"{base.name}_{k}")
        if os.path.lexists(path):
            continue
        lock = DirLock(path, hint="wait until it ends, or choose another --out")
        lock.acquire()
        if path in lock.created:
            return lock
        lock.release()  # another process made that folder between our look and our mkdir: not ours
    raise FileExistsError(f"cannot find a free name for a new run directory next to {base}; pass --out")


def _train_owned(cfg: TrainConfig, run_dir, resume: bool, progress, stop_after_batches, overwrite: bool,
                 epochs, device, stop, overrides=None) -> dict:
    """:func:`train` once the run directory is owned (locked) and Ctrl-C is handled by ``stop``."""
    meta = None
    if resume:
        rd = RunDir(run_dir)
        if not rd.config_path.exists():
            raise FileNotFoundError(f"cannot resume: {rd.config_path} does not exist (is {run_dir} a run directory?)")
        cfg = TrainConfig.from_toml(rd.config_path)
        meta = read_checkpoint_meta(rd.ckpt / "last.npz")
        if meta is None:
            raise FileNotFoundError(f"cannot resume {run_dir}: it has no checkpoint (checkpoints/last.npz); the run "
                                    f"stopped before its first epoch ended, start it again with --out {run_dir} "
                                    f"--overwrite")
        done, in_epoch = int(meta["epoch"]), int(meta["batch"])
        if epochs is not None:
            if epochs < done + (1 if in_epoch else 0):
                raise ValueError(f"--epochs {epochs}: {run_dir} has already trained {done} epoch(s)"
                                 f"{' and part of the next' if in_epoch else ''}; expected --epochs >= "
                                 f"{done + (1 if in_epoch else 0)} (resume extends a run, it cannot shorten it)")
            cfg = cfg.updated({"epochs": epochs}, source="--epochs")
        if device is not None:
            cfg = cfg.updated({"device": device}, source="--device")
        if overrides:
            bad = [k for k in overrides if k.replace("-", "_") not in RESUME_OVERRIDES]
            if bad:
                raise ValueError(f"cannot change {', '.join(map(repr, bad))} of {run_dir} when resuming; a resumed "
                                 f"run keeps its config except epochs, device and {', '.join(RESUME_OVERRIDES)}")
            cfg = cfg.updated(overrides, source="the --resume options")
        if not in_epoch and done >= cfg.epochs and (rd.path / "report.json").exists():
            raise RunFinished(rd.path, done, json.loads((rd.path / "report.json").read_text()))
    elif device is not None:
        cfg = cfg.updated({"device": device}, source="device")
    cfg.validate()
    if not resume:
        rd = RunDir(run_dir or cfg.out or default_run_dir(cfg))
        check_new_run_dir(rd.path, overwrite)
    dev = resolve_device(cfg.device)
    if cfg.device == "auto" or dev == "cuda":
        progress.message(_device_message(cfg.device, dev))
    sim = sim_params(cfg)
    net = build_network(cfg, sim).to(dev)  # on 'cuda' every array of a step stays on the GPU
    loss = build_loss(cfg)
    opt = make_optimizer(cfg.optimizer, net.parameters(), lr=cfg.lr)
    train_ds, val_ds, test_ds = load_data(cfg, sim)
    if train_ds.sensor_shape != net.input_shape:
        raise ValueError(f"network {cfg.net!r} expects input {net.input_shape} (C, H, W) but dataset "
                         f"{cfg.dataset!r} gives {tuple(train_ds.sensor_shape)}; change --net")
    if net.output_shape[0] != train_ds.n_classes:
        raise ValueError(f"network {cfg.net!r} has {net.output_shape[0]} outputs but dataset {cfg.dataset!r} has "
                         f"{train_ds.n_classes} classes")
    check_jitter(cfg, train_ds)
    if cfg.dataset != "synthetic":
        progress.message(f"checking {len(train_ds) + len(test_ds) + (len(val_ds) if val_ds else 0)} samples for "
                         f"empty ones (reads every file once; training reuses what is read)")
    train_ds = check_empty_samples(train_ds, "training", cfg.empty_samples, progress.message)
    val_ds = check_empty_samples(val_ds, "validation", cfg.empty_samples, progress.message)
    test_ds = check_empty_samples(test_ds, "test", cfg.empty_samples, progress.message)
    loader = make_loader(train_ds, cfg, shuffle=True, augment=True, prefetch=settings.current().train_prefetch)
    start_epoch, skip_batches, best, acc_state = 0, 0, -1.0, None
    created = False
    if resume:
        meta = load_checkpoint(rd.ckpt / "last.npz", net, opt)
        start_epoch, skip_batches, best = meta["epoch"], meta["batch"], meta["best"]
        acc_state = meta.get("accumulators")
        rd.truncate_metrics(start_epoch)
        if epochs is not None or device is not None or overrides:
            rd.write_config(cfg)  # the run now has these epochs / this device
        where = f"epoch {start_epoch + 1}/{cfg.epochs}" + (
            ", its evaluation" if meta.get("evaluating") else f", batch {skip_batches + 1}" if skip_batches else "")
        progress.message(f"resuming {rd.path} at {where}" if start_epoch < cfg.epochs else
                         f"resuming {rd.path}: all {cfg.epochs} epochs trained; writing the final report")
    else:
        if overwrite and rd.path.exists():
            remove_run_files(rd.path)  # asked for, and only now that the new run has passed every check
        created = not rd.path.exists()
        rd.create(cfg)
        (rd.path / "metrics.jsonl").write_text("")
    state = {"best": best, "batches": 0}
    try:
        with stop:  # entered by train() already: the phases below tell Ctrl-C what to do
            for epoch in range(start_epoch, cfg.epochs):
                _train_epoch(cfg, epoch, skip_batches if epoch == start_epoch else 0,
                             acc_state if epoch == start_epoch else None, net, loss, opt, loader, train_ds, val_ds,
                             test_ds, rd, progress, stop, state, stop_after_batches)
        stop.phase = "final"
        getattr(progress, "start_eval", lambda *a: None)("final test", len(test_ds))
        final = evaluate(net, test_ds, cfg, loss, stop=stop)  # _EvalStopped: train() says how to resume
    except TrainingInterrupted:
        raise
    except BaseException:
        if not resume and not (rd.ckpt / "last.npz").exists():
            # nothing checkpointed yet: leave no half-made run directory behind
            if created:
                shutil.rmtree(rd.path, ignore_errors=True)
            else:
                remove_run_files(rd.path)
        raise
    rows = rd.metrics()
    report = {
        "dataset": cfg.dataset, "loss": cfg.loss, "net": cfg.net, "seed": cfg.seed, "epochs": cfg.epochs,
        "device": dev, "n_train_samples": len(train_ds), "n_val_samples": len(val_ds) if val_ds is not None else 0,
        "test": final.to_dict(), "final_accuracy": final.accuracy,
        "latency_ms": final.to_dict()["latency_ms"]["0.99"],
        "seconds_per_epoch": float(np.mean([r["seconds"] for r in rows])) if rows else None,
        "train_samples_per_s": float(np.mean([r["samples_per_s"] for r in rows])) if rows else None,
        "run_dir": str(rd.path),
    }
    stop.phase = "report"
    rd.write_report(report)
    stop.phase = "done"
    return report


#: warn after an epoch in which jitter moved more than this fraction of the training events off the sensor
JITTER_WARN_FRACTION = 0.2


def _train_epoch(cfg, epoch, skip_batches, acc, net, loss, opt, loader, train_ds, val_ds, test_ds, rd, progress,
                 stop, state, stop_after_batches):
    """One epoch: the batches (from ``skip_batches`` on), then evaluation, the metrics line and checkpoints.

    A stop request (Ctrl-C, or ``stop_after_batches`` reached) is honoured at a batch boundary: the
    checkpoint then records the epoch, the next batch and the running sums, and TrainingInterrupted is raised.
    A Ctrl-C during the last batch or the evaluation stops the evaluation and records the epoch with
    all its batches done (``evaluating``); resuming draws the batches without training and evaluates.
    """
    opt.lr = cfg.lr * cfg.lr_decay ** epoch
    loader.set_epoch(epoch)
    n_batches = len(loader)
    stop.phase = "batches"
    progress.start_epoch(epoch, cfg.epochs, n_batches)
    acc = acc or {"loss": 0.0, "correct": 0, "n": 0, "seconds": 0.0}
    stats = getattr(train_ds, "stats", None) or {}
    binned0, shifted0 = stats.get("events_binned", 0), stats.get("shifted_out", 0)
    t0 = time.perf_counter()
    batches = iter(loader)
    try:
        for batch, (x, y) in enumerate(batches):
            if batch < skip_batches:
                continue  # resuming: the loader still draws these batches so every RNG stays in step
            if stop.requested or (stop_after_batches is not None and state["batches"] >= stop_after_batches):
                acc["seconds"] += time.perf_counter() - t0
                stop.phase = "checkpoint"
                save_checkpoint(rd.ckpt / "last.npz", net, opt,
                                {"epoch": epoch, "batch": batch, "best": state["best"], "accumulators": acc,
                                 "complete": False})
                raise TrainingInterrupted(rd.path, f"in epoch {epoch + 1}/{cfg.epochs} before batch {batch + 1}/"
                                                   f"{n_batches}")
            out = net.forward(x, train=True)
            value, grad = loss.value_and_grad(out, y)
            if not math.isfinite(value):
                raise FloatingPointError(f"loss became {value} at epoch {epoch + 1}, batch {batch + 1}; "
                                         f"try a smaller --lr")
            net.zero_grad()
            net.backward(grad)
            opt.step()
            b = len(y)
            acc["loss"] += value * b
            acc["correct"] += int((predict(out) == y).sum())
            acc["n"] += b
            state["batches"] += 1
            elapsed = acc["seconds"] + time.perf_counter() - t0
            progress.batch(batch + 1, n_batches, acc["loss"] / acc["n"], acc["correct"] / acc["n"],
                           acc["n"] / max(elapsed, 1e-9))
    finally:
        if hasattr(batches, "close"):
            batches.close()  # stops and joins the loader's prefetch thread, also on Ctrl-C and on errors
    seconds = acc["seconds"] + time.perf_counter() - t0

    def stop_before_evaluation():
        """Checkpoint the epoch's trained parameters at its end, before its evaluation: --resume draws the
        epoch's batches without training on them, then evaluates (the same results as without the stop)."""
        stop.phase = "checkpoint"
        save_checkpoint(rd.ckpt / "last.npz", net, opt,
                        {"epoch": epoch, "batch": n_batches, "best": state["best"],
                         "accumulators": dict(acc, seconds=seconds), "complete": False, "evaluating": True})
        return TrainingInterrupted(rd.path, f"in epoch {epoch + 1}/{cfg.epochs}, after its last batch, before its "
                                            f"evaluation ended")

    if stop.requested:  # Ctrl-C during the last batch
        raise stop_before_evaluation()
    stop.phase = "evaluation"
    binned, shifted = stats.get("events_binned", 0) - binned0, stats.get("shifted_out", 0) - shifted0
    if cfg.jitter and binned and shifted > JITTER_WARN_FRACTION * binned:
        progress.message(f"warning: epoch {epoch + 1}: jitter {cfg.jitter} px moved {shifted} of {binned} training "
                         f"events ({100 * shifted / binned:.0f} %) off the sensor; a smaller --jitter keeps more")
    row = {"epoch": epoch + 1, "train_loss": acc["loss"] / max(acc["n"], 1),
           "train_acc": acc["correct"] / max(acc["n"], 1),
           "seconds": seconds, "samples_per_s": acc["n"] / max(seconds, 1e-9), "lr": opt.lr}
    select = None
    start_eval = getattr(progress, "start_eval", lambda *a: None)
    try:
        if val_ds is not None:
            start_eval("validation", len(val_ds))
            v = evaluate(net, val_ds, cfg, loss, stop=stop)
            row.update(val_loss=v.loss, val_acc=v.accuracy)
            select = v.accuracy
        if cfg.test_every and ((epoch + 1) % cfg.test_every == 0 or epoch + 1 == cfg.epochs):
            start_eval("test", len(test_ds))
            te = evaluate(net, test_ds, cfg, loss, stop=stop)
            row.update(test_loss=te.loss, test_acc=te.accuracy)
            select = te.accuracy if select is None else select
    except _EvalStopped:
        raise stop_before_evaluation() from None
    stop.phase = "checkpoint"  # a Ctrl-C from here on is honoured at the next batch (or the final evaluation)
    rd.append_metrics(row)
    progress.end_epoch(row)
    if select is not None and select > state["best"]:  # no selection: no best.npz (loaders use last)
        state["best"] = select
        save_checkpoint(rd.ckpt / "best.npz", net, opt, {"epoch": epoch + 1, "batch": 0, "best": select,
                                                       "complete": True})
    save_checkpoint(rd.ckpt / "last.npz", net, opt, {"epoch": epoch + 1, "batch": 0, "best": state["best"],
                                                   "complete": epoch + 1 == cfg.epochs})


def trial_dirs(base, cfg: TrainConfig) -> list:
    """The run directories of ``cfg.trials`` trials under ``base``: ``base`` itself for one trial, else
    ``base/seed_<s>`` for seeds ``seed .. seed+trials-1``."""
    base = Path(base)
    if cfg.trials == 1:
        return [base]
    return [base / f"seed_{cfg.seed + k}" for k in range(cfg.trials)]


def train_trials(cfg: TrainConfig, progress=None, overwrite: bool = False) -> list:
    """``cfg.trials`` runs with seeds ``seed .. seed+trials-1`` in ``out/seed_<s>`` (one run: ``out``).

    Every trial's directory is checked before the first one trains (:func:`check_new_run_dir`).
    """
    cfg.validate()
    progress = progress or _Progress()
    if cfg.trials == 1 and not cfg.out:
        # a new default run directory, claimed under its lock (``_2``, ``_3``... when two runs start in the
        # same second): naming it here first made the second of two such runs fail as "already holds a run"
        return [train(cfg, progress=progress, overwrite=overwrite)]
    base = Path(cfg.out) if cfg.out else default_run_dir(cfg)
    dirs = trial_dirs(base, cfg)
    for d in dirs:
        ensure_not_in_use(d, hint="wait until it ends, or choose another --out")  # each trial locks its own
        check_new_run_dir(d, overwrite)
    if cfg.trials == 1:
        return [train(cfg, run_dir=base, progress=progress, overwrite=overwrite)]
    reports = []
    for k, d in enumerate(dirs):
        c = cfg.updated({"seed": cfg.seed + k, "trials": 1})
        getattr(progress, "start_trial", lambda *a: None)(k + 1, cfg.trials, c.seed)
        reports.append(train(c, run_dir=d, progress=progress, overwrite=overwrite))
    return reports


def resumable_runs(path) -> list:
    """The run directories that ``pysrm train --resume PATH`` continues: PATH itself when it is a run
    directory, else the trials ``PATH/seed_<s>`` of a ``--trials`` run (in seed order)."""
    path = Path(path)
    if (path / "config.toml").exists():
        return [path]
    trials = [p for p in path.glob("seed_*") if (p / "config.toml").exists() and p.name[5:].isdigit()]
    return sorted(trials, key=lambda p: int(p.name[5:]))


def load_run(run_dir, sim: SimParams | None = None, checkpoint: str = "best", device: str = "cpu"):
    """``(cfg, net)`` of a saved run (``checkpoint`` 'best' or 'last') on ``device``."""
    rd = RunDir(run_dir)
    if not rd.config_path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run directory (no config.toml)")
    cfg = TrainConfig.from_toml(rd.config_path)
    net = build_network(cfg, sim)
    path = rd.ckpt / f"{checkpoint}.npz"
    if not path.exists():
        path = rd.ckpt / "last.npz"
    load_checkpoint(path, net)
    return cfg, net.to(device)
