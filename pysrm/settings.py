r"""Every tunable threshold, tile size, partition and budget of pysrm in one record.

pysrm picks between strategies (event-driven or dense products, fused blocks or single layers, the
recursive or the direct psp) by rules on shapes, densities and bytes; the numbers in those rules were
measured on the 2-vCPU VMs this project runs on (benchmarks/RESULTS.md) and are fields of
:class:`Settings`, each with the measurement behind it.  No rule depends on the number of threads:
results are bitwise the same with any ``NUMBA_NUM_THREADS``.

Where the numbers come from, in order:

1. the defaults below;
2. the environment, read here and nowhere else, once per process when :func:`current` is first
   called (:meth:`Settings.from_environment`; the variables are listed in :data:`ENVIRONMENT`);
3. :func:`override`, a context manager that changes fields for the code inside it (the current
   thread or task only: a :mod:`contextvars` variable), e.g. in tests::

       from pysrm import settings
       with settings.override(event_density_threshold=0.0):   # dense inputs never go event driven
           net.forward(x)

   A :class:`~pysrm.network.Network` runs each backward pass with the settings its forward pass ran with
   (so a forward and its backward always agree), and the links of its plan (whether a block hands its
   spikes on as events, up to which density) are fixed when the plan is built: ``net.configure()``
   rebuilds it under the settings in force.

Three kinds of fields:

* **choices** (densities, byte limits, batch sizes): they only pick the strategy, and every strategy
  gives the same spikes; weight gradients agree to float rounding where a strategy sums in another
  order (each op's docstring says which);
* **partitions** (``*_parts``, ``*_chunks``): a reduction is split into this many fixed parts by shape,
  so a result depends on them (to float rounding) but never on the thread count;
* **CUDA launch shapes** (``cuda_split_blocks``, ``cuda_event_chunk``, ``cuda_grid_z_max``): read when
  a kernel is launched.

Not here, because Numba compiles them into the kernels as constants (changing them means recompiling,
and a run-time value could disagree with the compiled one): the tile and block sizes of the CUDA kernels
(``pysrm.cuda.launches``: ``GEMM_THREADS``, ``GEMM_MICRO``, ``TRANSPOSE_TILE``; ``pysrm.blocks.srm_cuda``:
``TILE``, ``ROWS``, ``THREADS``, ``MAX_KERNEL``, ``MAX_REFRACTORY``; ``pysrm.ops.delay_cuda.GRAD_THREADS``),
and the conv block's ``ROW_SCAN_MIN_LENGTH`` (:mod:`pysrm.blocks.conv`: refractory responses longer than
16 bins take the row-by-row spike scan, chosen inside the compiled block).

The plan's ``memory_budget`` (:class:`pysrm.plan.PlanOptions`) defaults to :attr:`Settings.memory_budget`.
"""
from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import inspect
import os
from dataclasses import dataclass, field, fields

__all__ = ["Settings", "current", "override", "use", "ENVIRONMENT"]


def _simulator(environ) -> bool:
    """Whether Numba's CUDA simulator is on (the CUDA kernel shapes default smaller there, so that tiny
    test shapes cover several tiles)."""
    try:
        from numba.core import config
        return bool(config.ENABLE_CUDASIM)
    except Exception:  # pragma: no cover - numba is a dependency
        return environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1"


def _doc(text: str, **kw):
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True)
class Settings:
    """The tunables of pysrm (immutable; see the module docstring for how to change them).

    Every field is documented with its unit and the measurement behind its default
    (``Settings.describe()`` lists them); the Parameters section below is made from those field
    documents.
    """

    # ---------------------------------------------------------------- event-driven or dense products
    event_density_threshold: float = _doc(
        "inputs of dense layers with at most this fraction of non-zero bins take the event-driven paths "
        "(forward and weight gradient). Crossovers measured in the fourth session (benchmarks/RESULTS.md, "
        "'event-driven versus dense paths'): dense above 0.3; it was 0.15 until the N-MNIST CNN's dense1 "
        "input (15.5 % active) showed that the dense path's copies cost 200 MB each at batch 32 for no "
        "speed", default=0.3)
    conv_event_density_threshold: float = _doc(
        "the same for conv and pooling layers (crossovers about 0.13 forward, 0.2 weight gradient; kept "
        "below them)", default=0.08)
    conv_wgrad_event_density_threshold: float = _doc(
        "the same for the conv weight gradient of the fused conv blocks (pysrm.blocks.conv), which may run "
        "their forward as BLAS products and their weight gradient event driven: the N-MNIST CNN's conv3 "
        "reads pool2 at 10 % (crossover about 0.2)", default=0.2)

    # ---------------------------------------------------------------- fused blocks (pysrm.blocks)
    memory_budget: int = _doc(
        "bytes: the default memory budget of a plan (PlanOptions.memory_budget): a conv block whose conv "
        "runs as BLAS products runs its layers one by one when the whole network's unfused conv layers "
        "fit in it. 0: always fused, the default since the fused blocks became both faster and leaner "
        "(issue 25: DVS Gesture batch 16 conv2 fused 0.51 s vs 0.97 s on its own per step, N-MNIST CNN "
        "conv3 at batch 8 0.19 vs 0.22 s); it was 2 GiB", default=0)
    fused_min_outputs: int = _doc(
        "outputs: below this many, the fused Dense -> SRM forward is slower than the three ops unless its "
        "spikes are wanted as events (measured at N-MNIST batch-32 shapes: 10 outputs 0.68 vs 0.35 ms, 32 "
        "about even, 64 1.4 vs 1.7 ms)", default=48)
    blas_block_min_bytes: int = _doc(
        "bytes: a conv block whose conv takes BLAS products runs fused only when the batch's conv output "
        "takes more than this. 0 since issue 25 (N-MNIST CNN conv3 at batch 8: 187 ms fused vs 216 ms "
        "unfused per step; it was 128 MB when the fused backward took 950 ms against 480)",
        default=0)
    fused_conv_min_batch: int = _doc(
        "samples: conv blocks run fused from this batch size up; they parallelise over samples, so a "
        "batch of one or two would run on one thread (DVS Gesture batch 1: 2.9 fused vs 4.0 separate "
        "samples/s training). A batch-size rule, never a thread-count rule", default=4)
    unfused_values_per_output: int = _doc(
        "dtype-sized values an unfused training step of a conv network holds per conv output value at "
        "its peak (the DVS Gesture network at batch 16 peaks at 1.82 GB for 16 x 29.5 MB of conv "
        "outputs: 3.9x)", default=4)
    store_potentials_bytes: int = _doc(
        "bytes: the potentials the fused conv blocks of a network keep together in a training forward "
        "for their backward instead of recomputing the forward per sample (the conv layers claim in "
        "order, each where its claim still fits: pysrm.plan.PlanContext.keeps_potentials); the "
        "recomputed potentials are bitwise the kept ones. 768 MB: the N-MNIST CNN at batch 32 keeps "
        "conv2's and conv3's (653 MB; conv1's 888 MB would not fit) and trains 10 % faster, within the "
        "2 GB peak", default=768 * 2 ** 20)
    conv_block_tile: int = _doc(
        "columns (neurons x positions) per tile of a conv block's per-neuron passes without pooling: a "
        "(T, tile) block of one sample stays in L2 (whole output rows, at least one)", default=512)
    fused_dense_max_outputs: int = _doc(
        "outputs: a dense layer with at most this many outputs has its input gradient made row by row "
        "inside the delay backward before it", default=64)

    # ---------------------------------------------------------------- psp strategies
    recursive_min_length: int = _doc(
        "bins: alpha responses at least this long take the recursive psp forward; shorter ones are "
        "cheaper as a direct sum (measured on 2 cores, benchmarks/RESULTS.md)", default=6)
    recursive_min_length_backward: int = _doc(
        "bins: the same for the backward (the correlation)", default=12)

    # ---------------------------------------------------------------- BLAS conv
    gemm_rows: int = _doc(
        "rows of one product task of the BLAS conv (output columns x T; about 1,500 at T = 300)",
        default=1536)

    # ---------------------------------------------------------------- partitions (by shape, fixed)
    dense_wgrad_parts: int = _doc(
        "the event-driven dense weight gradient is summed in at most this many fixed parts of the batch "
        "(its parallelism; a constant so results do not depend on the thread count)", default=4)
    conv_wgrad_parts: int = _doc(
        "the same for the conv weight gradient (event driven, and the conv block's BLAS parts)",
        default=4)
    sample_chunks: int = _doc(
        "tasks of the per-sample fused first-layer kernels (samples split by shape)", default=16)
    delay_row_chunks: int = _doc(
        "tasks of the delay backward fused with a dense input gradient (rows split by shape)",
        default=64)

    # ---------------------------------------------------------------- training loop
    train_prefetch: int = _doc(
        "batches the training loop's DataLoader makes ahead in a thread; the batches are the same with "
        "any value, 0 makes each one when the loop asks", default=2)

    # ---------------------------------------------------------------- CUDA (run-time choices)
    cuda_gemm: str = _doc(
        "how the GPU's GEMM-shaped products run: 'auto' (cuBLAS through CuPy where usable), 'cublas' "
        "or 'numba' (environment PYSRM_CUDA_GEMM)", default="auto")
    cuda_tf32: bool = _doc(
        "let cuBLAS use TF32 tensor cores for float32 products (environment PYSRM_CUDA_TF32=1)",
        default=False)
    cuda_cupy: bool = _doc(
        "use CuPy (cuBLAS, its memory pool) when it works; false: Numba only (environment "
        "PYSRM_CUDA_CUPY=0)", default=True)
    cublas_partial_limit: int = _doc(
        "elements: above this many elements of the per-sample partial weight gradients, one GEMM per "
        "sample accumulating instead (memory; environment PYSRM_CUBLAS_PARTIAL_LIMIT)", default=1 << 27)

    # ---------------------------------------------------------------- CUDA launch shapes (read at launch)
    cuda_split_blocks: int = _doc(
        "target number of blocks when a batch-reduced product is split over blockIdx.z (environment "
        "PYSRM_CUDA_SPLIT_BLOCKS; 3 under the simulator)", default=None)
    cuda_event_chunk: int = _doc(
        "events per block of the event-driven weight gradients (environment PYSRM_CUDA_EVENT_CHUNK; 5 "
        "under the simulator)", default=None)
    cuda_grid_z_max: int = _doc(
        "largest gridDim.z of the batched kernels; they stride over the rest of the batch (environment "
        "PYSRM_CUDA_GRID_Z_MAX; 2 under the simulator)", default=None)

    def __post_init__(self):
        sim = None
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None and f.name in _SIM_DEFAULTS:
                sim = _simulator(os.environ) if sim is None else sim
                object.__setattr__(self, f.name, _SIM_DEFAULTS[f.name][0 if sim else 1])
                continue
            _check(f.name, v)

    def replace(self, **changes) -> "Settings":
        """A copy with ``changes``.

        Parameters
        ----------
        **changes
            field names as keywords, with their new values.

        Returns
        -------
        Settings
            the new record (this one is unchanged).

        Raises
        ------
        TypeError
            for a name that is not a field (the message lists the fields).
        ValueError
            for a value out of range.
        """
        names = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - names)
        if unknown:
            raise TypeError(f"unknown setting(s) {', '.join(unknown)}; the settings are: {', '.join(sorted(names))}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_environment(cls, environ=None) -> "Settings":
        """The defaults with the environment variables of :data:`ENVIRONMENT` applied.

        Parameters
        ----------
        environ : mapping of str to str, optional
            where the variables are read; default ``os.environ``.

        Returns
        -------
        Settings

        Raises
        ------
        ValueError
            naming the variable, for a value that is not a valid setting.
        """
        environ = os.environ if environ is None else environ
        changes = {}
        for var, (name, parse) in ENVIRONMENT.items():
            raw = environ.get(var)
            if raw is None or raw == "":
                continue
            try:
                changes[name] = parse(raw)
                _check(name, changes[name])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"environment variable {var}={raw!r}: {exc}") from None
        return cls(**changes)

    @classmethod
    def describe(cls) -> str:
        """The fields as text.

        Returns
        -------
        str
            one line per field: name, default and what it means.
        """
        d = cls()
        return "\n".join(f"{f.name} = {getattr(d, f.name)!r}: {f.metadata['doc']}" for f in fields(cls))


def _parameters_section(cls) -> str:
    d = "\n\nParameters\n----------\n"
    for f in fields(cls):
        default = "depends on the CUDA simulator" if f.name in _SIM_DEFAULTS else f"default {f.default!r}"
        d += f"{f.name} : {f.type}, {default}\n    {f.metadata['doc']}.\n"
    d += ("\nRaises\n------\nTypeError\n    a value of the wrong type.\nValueError\n"
          "    a value out of range (the message names the field and the range).\n")
    return d


#: the fields whose default differs under Numba's CUDA simulator: ``(simulator, GPU)``
_SIM_DEFAULTS = {"cuda_split_blocks": (3, 1024), "cuda_event_chunk": (5, 128), "cuda_grid_z_max": (2, 65535)}

Settings.__doc__ = inspect.cleandoc(Settings.__doc__) + _parameters_section(Settings)

_CHOICES = {"cuda_gemm": ("auto", "cublas", "numba")}
_FRACTIONS = ("event_density_threshold", "conv_event_density_threshold", "conv_wgrad_event_density_threshold")
_NON_NEGATIVE = ("memory_budget", "blas_block_min_bytes", "store_potentials_bytes", "fused_min_outputs",
                 "fused_dense_max_outputs", "train_prefetch", "cublas_partial_limit")


def _check(name: str, v) -> None:
    if name in _CHOICES:
        if v not in _CHOICES[name]:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, _CHOICES[name]))}; got {v!r}")
        return
    if name in ("cuda_tf32", "cuda_cupy"):
        if not isinstance(v, bool):
            raise TypeError(f"{name} must be True or False; got {v!r}")
        return
    if name in _FRACTIONS:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            raise ValueError(f"{name} must be a fraction in [0, 1]; got {v!r}")
        return
    if isinstance(v, bool) or not isinstance(v, int) and not (hasattr(v, "__index__")):
        raise TypeError(f"{name} must be a whole number; got {v!r}")
    low = 0 if name in _NON_NEGATIVE else 1
    if int(v) < low:
        raise ValueError(f"{name} must be >= {low}; got {v!r}")


def _flag(raw: str) -> bool:
    if raw not in ("0", "1"):
        raise ValueError("expected 0 or 1")
    return raw == "1"


#: the environment variables pysrm reads for its settings: variable -> (field, parser)
ENVIRONMENT = {
    "PYSRM_CUDA_GEMM": ("cuda_gemm", str),
    "PYSRM_CUDA_TF32": ("cuda_tf32", _flag),
    "PYSRM_CUDA_CUPY": ("cuda_cupy", _flag),
    "PYSRM_CUBLAS_PARTIAL_LIMIT": ("cublas_partial_limit", int),
    "PYSRM_CUDA_SPLIT_BLOCKS": ("cuda_split_blocks", int),
    "PYSRM_CUDA_EVENT_CHUNK": ("cuda_event_chunk", int),
    "PYSRM_CUDA_GRID_Z_MAX": ("cuda_grid_z_max", int),
}

_CURRENT: contextvars.ContextVar = contextvars.ContextVar("pysrm_settings", default=None)
_PROCESS: list = []  # the process's settings from the environment, made on first use (immutable)


def current() -> Settings:
    """The settings in force here.

    Returns
    -------
    Settings
        those of the innermost :func:`override`, else the process's (the defaults with the
        environment applied, read once per process).
    """
    s = _CURRENT.get()
    if s is not None:
        return s
    if not _PROCESS:
        _PROCESS.append(Settings.from_environment())
    return _PROCESS[0]


@contextlib.contextmanager
def use(record: Settings):
    """Put ``record`` in force for the code inside the ``with`` block (this thread or task only), e.g. the
    settings a forward pass ran with, for its backward.

    Parameters
    ----------
    record : Settings
        the settings to use.

    Yields
    ------
    Settings
        ``record``.

    Raises
    ------
    TypeError
        ``record`` is not a :class:`Settings`.
    """
    if not isinstance(record, Settings):
        raise TypeError(f"expected a pysrm.settings.Settings, got {type(record).__name__}")
    token = _CURRENT.set(record)
    try:
        yield record
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def override(**changes):
    """Change settings for the code inside the ``with`` block (this thread or task only).

    Parameters
    ----------
    **changes
        field names of :class:`Settings` as keywords, with their new values.

    Yields
    ------
    Settings
        the settings in force inside the block.

    Raises
    ------
    TypeError
        an unknown name (the message lists the valid ones) or a value of the wrong type.
    ValueError
        a value out of range.
    """
    new = current().replace(**changes)
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)
