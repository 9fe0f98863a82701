"""Parameter records of the SRM neuron and of the simulation.

Units: every time is in milliseconds (ms); ``theta`` is in the (arbitrary)
units of the membrane potential.  The names follow SLAYER-PyTorch's
``neuron``/``simulation`` dictionaries (``tauSr`` -> ``tau_sr`` ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ._checks import positive


@dataclass(frozen=True)
class NeuronParams:
    r"""Parameters of an SRM neuron (SLAYER's ``neuron`` block).

    Attributes
    ----------
    theta : float
        Firing threshold :math:`\vartheta`.
    tau_sr : float
        Time constant of the spike response kernel
        :math:`\epsilon(t) = t/\tau_{sr}\, e^{1 - t/\tau_{sr}}` (ms).
    tau_ref : float
        Time constant of the refractory kernel
        :math:`\nu(t) = -s_{ref}\vartheta\, t/\tau_{ref}\, e^{1 - t/\tau_{ref}}` (ms).
    scale_ref : float
        Refractory scale :math:`s_{ref}`, relative to ``theta`` (SLAYER's default 2).
    tau_rho : float
        Width of the surrogate derivative, relative to ``theta``
        (the surrogate decays with :math:`|u-\vartheta| / (\tau_\rho \vartheta)`).
    scale_rho : float
        Height scale of the surrogate derivative.
    """

    theta: float = 10.0
    tau_sr: float = 1.0
    tau_ref: float = 1.0
    scale_ref: float = 2.0
    tau_rho: float = 1.0
    scale_rho: float = 1.0

    def __post_init__(self):
        for f in fields(self):
            object.__setattr__(self, f.name, positive(f.name, getattr(self, f.name)))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SimParams:
    """Simulation parameters (SLAYER's ``simulation`` block).

    Attributes
    ----------
    ts : float
        Length of one time bin ``Ts`` (ms).
    t_sample : float
        Length of a sample (ms); the number of bins is ``int(t_sample / ts)``,
        and ``ts`` must divide ``t_sample``.
    """

    ts: float = 1.0
    t_sample: float = 300.0

    def __post_init__(self):
        ts = positive("ts", self.ts)
        t_sample = positive("t_sample", self.t_sample)
        n = t_sample / ts
        if abs(n - round(n)) > 1e-9 * max(1.0, n):
            raise ValueError(
                f"ts={ts} ms does not divide t_sample={t_sample} ms; expected t_sample to be a whole "
                f"number of bins (e.g. t_sample={round(n) * ts})")
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "t_sample", t_sample)

    @property
    def n_bins(self) -> int:
        """Number of time bins ``int(t_sample / ts)``."""
        return int(round(self.t_sample / self.ts))

    def to_dict(self) -> dict:
        return asdict(self)
