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

    Every value is stored as an attribute of the same name (a frozen dataclass).

    .. math::

        \epsilon(t) = \frac{t}{\tau_{sr}} e^{1 - t/\tau_{sr}}, \qquad
        \nu(t) = -s_{ref}\vartheta \frac{t}{\tau_{ref}} e^{1 - t/\tau_{ref}}, \qquad
        \rho(u) = \frac{s_\rho}{\tau_\rho \vartheta} e^{-|u - \vartheta| / (\tau_\rho \vartheta)}

    Parameters
    ----------
    theta : float, default 10.0
        Firing threshold :math:`\vartheta`, in the (arbitrary) unit of the membrane potential; > 0.
    tau_sr : float, default 1.0
        Time constant :math:`\tau_{sr}` of the spike response (psp) :math:`\epsilon` (ms); > 0.
    tau_ref : float, default 1.0
        Time constant :math:`\tau_{ref}` of the refractory response :math:`\nu` (ms); > 0.
    scale_ref : float, default 2.0
        Refractory scale :math:`s_{ref}`, relative to ``theta`` (SLAYER's default 2); > 0.
    tau_rho : float, default 1.0
        Width :math:`\tau_\rho` of the surrogate derivative :math:`\rho`, relative to ``theta``; > 0.
    scale_rho : float, default 1.0
        Height scale :math:`s_\rho` of the surrogate derivative; > 0.

    Raises
    ------
    TypeError
        A value is not a number (the message names the parameter).
    ValueError
        A value is not finite or not > 0 (the message names the parameter).

    See Also
    --------
    pysrm.responses.srm_kernel, pysrm.responses.refractory_kernel : the responses sampled at ``Ts``.
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
        """The parameters as a dict.

        Returns
        -------
        dict
            ``{"theta": ..., "tau_sr": ..., "tau_ref": ..., "scale_ref": ..., "tau_rho": ...,
            "scale_rho": ...}`` (floats; times in ms), accepted back by ``NeuronParams(**d)``.
        """
        return asdict(self)


@dataclass(frozen=True)
class SimParams:
    """Simulation parameters (SLAYER's ``simulation`` block).

    Every value is stored as an attribute of the same name (a frozen dataclass).

    Parameters
    ----------
    ts : float, default 1.0
        Length of one time bin ``Ts`` (ms); > 0.  A spike has amplitude ``1/Ts``.
    t_sample : float, default 300.0
        Length of a sample (ms); > 0 and a whole number of bins: the number of bins is
        ``T = t_sample / ts`` (:attr:`n_bins`).

    Raises
    ------
    TypeError
        ``ts`` or ``t_sample`` is not a number.
    ValueError
        ``ts`` or ``t_sample`` is not finite or not > 0, or ``ts`` does not divide ``t_sample`` (the
        message suggests the nearest ``t_sample`` that it divides).
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
        """Number of time bins ``T = t_sample / ts`` (int)."""
        return int(round(self.t_sample / self.ts))

    def to_dict(self) -> dict:
        """The parameters as a dict.

        Returns
        -------
        dict
            ``{"ts": ..., "t_sample": ...}`` (floats, ms), accepted back by ``SimParams(**d)``.
        """
        return asdict(self)
