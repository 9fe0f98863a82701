"""Training configuration: one flat record, read from TOML, overridden by CLI flags.

Every field can be set in a TOML file (``pysrm train --config FILE``) with the
same name as the command-line option (``--tau-sr`` -> ``tau_sr``); flags given
on the command line override the file.  Unknown keys are an error that lists
the valid ones.  A run directory's ``config.toml`` is the fully resolved record
plus a ``[versions]`` table.
"""
from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass, fields

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATASET_CHOICES = ("synthetic", "nmnist", "dvs-gesture", "ntidigits")
LOSS_CHOICES = ("spike-rate", "spikemax", "spikemax-g", "spikemax-s", "num-spikes")
OPTIMIZER_CHOICES = ("sgd", "adam", "nadam")
DEVICE_CHOICES = ("cpu", "cuda", "auto")
GRAD_CHOICES = ("exact", "paper")
EMPTY_SAMPLES_CHOICES = ("error", "skip")

_DATASET_ALIASES = {"dvsgesture": "dvs-gesture", "dvs128-gesture": "dvs-gesture", "n-mnist": "nmnist",
                    "n-tidigits": "ntidigits", "ntidigits18": "ntidigits"}


def normalize_loss(name):
    """The canonical spelling of a loss name: ``spikemax_g``, ``SpikeMax-G`` -> ``spikemax-g`` (others unchanged).

    The papers and docs write ``spikemax_g``/``spikemax_s``; the command line and the run
    directories use ``spikemax-g``/``spikemax-s``; both are accepted everywhere.
    """
    if not isinstance(name, str):
        return name
    key = name.strip().lower().replace("_", "-")
    return key if key in LOSS_CHOICES else name


#: a dataset name ``tonic:<ClassName>`` selects ``tonic.datasets.<ClassName>`` (pysrm.data.tonic_adapter)
TONIC_PREFIX = "tonic:"


def is_tonic_dataset(name) -> bool:
    """True for ``tonic:<ClassName>`` (a class name after the prefix; its case is kept)."""
    return isinstance(name, str) and name.startswith(TONIC_PREFIX) and name[len(TONIC_PREFIX):].isidentifier()


def normalize_dataset(name):
    """The canonical dataset name: ``dvs_gesture``, ``DVS-Gesture``, ``n-mnist`` -> ``dvs-gesture``, ``nmnist``;
    ``Tonic: NMNIST`` -> ``tonic:NMNIST`` (the tonic class name keeps its case)."""
    if not isinstance(name, str):
        return name
    if name.strip().lower().startswith(TONIC_PREFIX):
        return TONIC_PREFIX + name.strip()[len(TONIC_PREFIX):].strip()
    key = name.strip().lower().replace("_", "-")
    key = _DATASET_ALIASES.get(key, key)
    return key if key in DATASET_CHOICES else name


_NORMALIZERS = {"loss": normalize_loss, "dataset": normalize_dataset}


@dataclass
class TrainConfig:
    """All settings of a training run (units: ms for times)."""

    # data
    dataset: str = "synthetic"
    data_dir: str | None = None
    train_list: str | None = None      # nmnist list layout: e.g. train1K.txt
    test_list: str | None = None       # nmnist list layout: e.g. test100.txt
    jitter: int = 0                    # random spatial jitter (pixels) as training augmentation
    n_train: int | None = None         # use only the first n training samples (None: all; >= 1)
    n_test: int | None = None          # use only the first n test samples (None: all; >= 1)
    empty_samples: str = "error"       # samples with no event: "error" (listed at start-up) or "skip" (counted)
    val_split: float = 0.0             # fraction of the training samples held out for validation
    test_every: int = 1                # evaluate the test split after every N-th epoch (and the last);
                                       # 0: only the final network (report.json) -- blind tuning on val
    # network
    net: str = "16x16x2-64-10"
    delays: bool = False
    dropout: float = 0.0
    dense_weight_scale: float = 10.0   # SLAYER's init scale of dense weights (x U(-1/sqrt(fan_in), 1/sqrt(fan_in)))
    conv_weight_scale: float = 100.0   # SLAYER's init scale of conv weights
    response_tolerance: float = 0.01   # the spike and refractory responses are sampled until they fall below
                                       # this (SLAYER: 0.01); 1e-12 for a network a NIR backend reproduces exactly
    # neuron and simulation
    theta: float = 10.0
    tau_sr: float = 2.0
    tau_ref: float = 2.0
    scale_ref: float = 2.0
    tau_rho: float = 1.0
    scale_rho: float = 1.0
    ts: float = 1.0
    t_sample: float = 60.0
    test_t_sample: float | None = None  # length of test samples (ms); None: t_sample (DVS Gesture: 1500)
    # loss
    loss: str = "spikemax"
    window: float = 20.0               # spikemax sliding window W (ms)
    true_rate: float = 0.2             # spike-rate target rates (spikes per ms)
    false_rate: float = 0.03
    true_count: float | None = None    # num-spikes targets (default: rates x duration)
    false_count: float | None = None
    eps: float | None = None           # zero-count guard of the spikemax losses (None: loss default)
    grad: str = "exact"
    # optimisation
    epochs: int = 6
    batch_size: int = 32
    lr: float = 0.03
    optimizer: str = "adam"
    lr_decay: float = 1.0              # multiply lr by this after every epoch
    seed: int = 0
    trials: int = 1
    device: str = "cpu"
    memory_gb: float = 0.0             # memory budget of the conv layers (GiB): BLAS-mode conv blocks run unfused
                                       # when the network's unfused conv layers fit in it, else fused (faster)
    out: str | None = None

    def __post_init__(self):
        for key, norm in _NORMALIZERS.items():
            setattr(self, key, norm(getattr(self, key)))

    # -- validation -------------------------------------------------------------------------------------
    def validate(self, test_loss: bool = True) -> "TrainConfig":
        """Check every setting, alone and together, before anything is built; returns ``self``.

        Besides each value's own range this builds what a run builds from the values (the neuron's
        responses sampled at ``ts``, the loss, the training and the test simulation: see
        :meth:`check_objects`), so that a setting that cannot work (``tau_sr=0.005`` with ``ts=1``, a
        spikemax window longer than ``test_t_sample``, a rate above ``1/ts``) is refused here, before
        the first batch, by ``pysrm train``, ``train --resume``, ``eval`` and ``sweep`` alike.

        Parameters
        ----------
        test_loss : bool
            Also check the loss against the test simulation (``test_t_sample``).  ``pysrm eval`` passes
            False: it reports the loss as NaN when the test samples are shorter than the window.

        Returns
        -------
        pysrm.config.TrainConfig
            ``self``.

        Raises
        ------
        ValueError
            A value out of its range, or settings that make a network that cannot work; the message names
            the setting, its value and what would work.
        """
        def choice(name, choices):
            v = getattr(self, name)
            if v not in choices:
                raise ValueError(f"{name} must be one of {', '.join(choices)}; got {v!r}")
        if not is_tonic_dataset(self.dataset):
            if isinstance(self.dataset, str) and self.dataset.startswith(TONIC_PREFIX):
                raise ValueError(f"dataset must be one of {', '.join(DATASET_CHOICES)} or tonic:<ClassName> (a class "
                                 f"of tonic.datasets, e.g. tonic:NMNIST); got {self.dataset!r}")
            choice("dataset", DATASET_CHOICES)
        choice("loss", LOSS_CHOICES)
        choice("optimizer", OPTIMIZER_CHOICES)
        choice("device", DEVICE_CHOICES)
        choice("grad", GRAD_CHOICES)
        choice("empty_samples", EMPTY_SAMPLES_CHOICES)
        for name in ("theta", "tau_sr", "tau_ref", "scale_ref", "tau_rho", "scale_rho", "ts", "t_sample", "lr",
                     "window", "lr_decay", "dense_weight_scale", "conv_weight_scale"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
        if not (isinstance(self.memory_gb, (int, float)) and not isinstance(self.memory_gb, bool)
                and math.isfinite(self.memory_gb) and self.memory_gb >= 0):
            raise ValueError(f"memory_gb must be a finite number >= 0 (GiB; 0: conv blocks always fused); "
                             f"got {self.memory_gb!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool) or self.seed < 0:
            raise ValueError(f"seed must be an integer >= 0 (the random seed of initialisation, shuffling and "
                             f"dropout); got {self.seed!r}")
        if self.eps is not None and not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps)
                                         and self.eps > 0):
            raise ValueError(f"eps must be a finite number > 0 (a pseudo-count; unset: the loss default); "
                             f"got {self.eps!r}")
        for name in ("true_rate", "false_rate", "true_count", "false_count"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")
        for name in ("epochs", "batch_size", "trials"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if name == "epochs" else 1):
                raise ValueError(f"{name} must be an integer >= {0 if name == 'epochs' else 1}; got {v!r}")
        if not isinstance(self.test_every, int) or isinstance(self.test_every, bool) or self.test_every < 0:
            raise ValueError(f"test_every must be an integer >= 0 (0: test only the final network); "
                             f"got {self.test_every!r}")
        if self.test_t_sample is not None and not (math.isfinite(self.test_t_sample) and self.test_t_sample > 0):
            raise ValueError(f"test_t_sample must be a finite number > 0 (ms); got {self.test_t_sample!r}")
        if self.loss == "spikemax" and self.window > self.t_sample:
            raise ValueError(f"window={self.window} ms is longer than t_sample={self.t_sample} ms; expected a "
                             "spikemax window <= t_sample")
        if (test_loss and self.loss == "spikemax" and self.test_t_sample is not None
                and self.window > self.test_t_sample):
            raise ValueError(f"window={self.window} ms is longer than test_t_sample={self.test_t_sample} ms: the test "
                             f"loss, evaluated after the epochs, would fail; expected a spikemax window <= "
                             f"test_t_sample (or test_t_sample >= {self.window})")
        if not (isinstance(self.response_tolerance, (int, float)) and 0.0 < self.response_tolerance < 1.0):
            raise ValueError(f"response_tolerance must be in (0, 1): the spike and refractory responses are sampled "
                             f"until they fall below it (SLAYER: 0.01); got {self.response_tolerance!r}")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"dropout must be in [0, 1); got {self.dropout!r}")
        if not (0.0 <= self.val_split < 1.0):
            raise ValueError(f"val_split must be in [0, 1); got {self.val_split!r}")
        if self.jitter < 0:
            raise ValueError(f"jitter must be >= 0 pixels; got {self.jitter!r}")
        for name in ("n_train", "n_test"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be an integer >= 1 (the number of {name[2:]} samples to use; unset: "
                                 f"all); got {v!r}, which would leave no {name[2:]} data")
        self.check_objects(test_loss=test_loss)
        return self

    def check_objects(self, test_loss: bool = True) -> list:
        """Build the neuron, the simulations and the loss of this config and check them against ``ts`` and ``T``.

        The values that each object owns are checked by that object: the responses sampled at ``ts``
        (:func:`pysrm.responses.check_responses`: a time constant whose response is all zeros is an
        error, one below ``ts`` or above ``t_sample`` a :class:`~pysrm.responses.SettingsWarning`), the
        loss's rates, counts and window (its constructor, and :meth:`pysrm.losses.Loss.check_simulation`
        against the training simulation and, with ``test_loss``, the test one).

        Parameters
        ----------
        test_loss : bool
            Check the loss against the test simulation (``test_t_sample``) too.

        Returns
        -------
        list of str
            The warnings issued (also as :class:`~pysrm.responses.SettingsWarning`).

        Raises
        ------
        ValueError
            A setting that makes a network that cannot work (the message names it and what would work).
        """
        from .params import SimParams
        from .responses import check_responses
        from .train import build_loss, neuron_params, sim_params
        sim = sim_params(self)
        issued = check_responses(neuron_params(self), sim, self.response_tolerance, self.response_tolerance)
        loss = build_loss(self)
        loss.check_simulation(sim, "t_sample")
        if self.test_t_sample is not None:
            try:
                test_sim = SimParams(ts=self.ts, t_sample=self.test_t_sample)
            except ValueError:
                n = round(self.test_t_sample / self.ts)
                raise ValueError(f"test_t_sample={self.test_t_sample} ms is not a whole number of bins of ts={self.ts} "
                                 f"ms; expected a multiple of ts (e.g. test_t_sample={max(1, n) * self.ts})") from None
            if test_loss:
                loss.check_simulation(test_sim, "test_t_sample", training=False)
        return issued

    # -- construction -----------------------------------------------------------------------------------
    @classmethod
    def keys(cls) -> list:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        return cls().updated(data, source)

    def updated(self, data: dict, source: str = "config") -> "TrainConfig":
        """A copy with ``data`` applied; unknown keys and wrong types raise ValueError naming them."""
        valid = {f.name: f for f in fields(self)}
        out = dataclasses.replace(self)
        for key, value in data.items():
            k = key.replace("-", "_")
            if k not in valid:
                raise ValueError(f"unknown key {key!r} in {source}; valid keys: {', '.join(valid)}")
            v = _coerce(k, value, getattr(TrainConfig, k, None), source)
            setattr(out, k, _NORMALIZERS[k](v) if k in _NORMALIZERS else v)
        return out

    @classmethod
    def from_toml(cls, path, overrides: dict | None = None) -> "TrainConfig":
        data = read_toml(path)
        data.pop("versions", None)
        cfg = cls.from_dict(data, source=str(path))
        if overrides:
            cfg = cfg.updated(overrides, source="command line")
        return cfg

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


_TYPES = {f.name: f.type for f in fields(TrainConfig)}


def _coerce(key, value, default, source):
    t = _TYPES[key]
    if value is None:
        if "None" in t:
            return None
        raise ValueError(f"{key} in {source} cannot be empty")
    try:
        if t.startswith("bool"):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
                return value.lower() in ("true", "1", "yes")
            raise ValueError
        if t.startswith("int"):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if t.startswith("float"):
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} in {source} must be of type {t}; got {value!r}") from None


def read_toml(path) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config file {path} is not valid TOML: {e}") from None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    s = str(v).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{s}"'


def dump_toml(data: dict) -> str:
    """Write a flat dict (plus nested one-level tables) as TOML; ``None`` values are written as comments."""
    lines, tables = [], []
    for k, v in data.items():
        if isinstance(v, dict):
            tables.append((k, v))
        elif v is None:
            lines.append(f"# {k} = (unset)")
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    for name, table in tables:
        lines.append("")
        lines.append(f"[{name}]")
        for k, v in table.items():
            if v is not None:
                lines.append(f"{k} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
