r"""NIR export and import: pysrm networks in and out of the Neuromorphic Intermediate Representation.

`NIR <https://neuroir.org>`_ (package ``nir``; numpy + h5py) describes a spiking network as a graph of
continuous-time nodes (times in **seconds**) joined by identity edges; a node sums its incoming edges,
and cycles are allowed.  pysrm's times are in **milliseconds** and its simulation runs on bins of
``Ts`` ms; this module converts.  ``pip install ".[nir]"`` in a clone of pysrm installs ``nir`` and ``h5py``; ``import pysrm`` never needs them.

Functions: :func:`to_nir` (network -> ``nir.NIRGraph``), :func:`write_nir` (to a ``.nir`` file,
atomically, never over an existing file unless asked), :func:`read_nir` (a file -> graph, errors naming
the file), :func:`from_nir` (graph or file -> :class:`~pysrm.network.Network`).

**The mapping** (layer -> nodes):

* ``Dense`` -> ``Linear`` (weight ``(out, in)``, the same dtype; a ``Flatten`` before it when its
  input is ``(C, H, W)`` with ``H*W > 1``); ``Conv`` -> ``Conv2d`` (stride, padding, dilation 1, groups
  1, zero bias); ``Pool`` -> ``SumPool2d`` (kernel = stride) followed by a ``Scale`` holding the pool
  weight.  pysrm pads a pooled size that the kernel does not divide at the bottom/right (SLAYER);
  NIR's ``SumPool2d`` has no such padding, so such a pool is written as the depthwise ``Conv2d``
  (``groups = C``) that computes it exactly: kernel ``k + p``, symmetric padding ``p = ceil(H/k) k - H``,
  stride ``k``, weights ``w`` on the last ``k x k`` block and 0 elsewhere.  ``Delay`` -> ``Delay``
  (per neuron, seconds; per-channel delays broadcast).  ``Dropout`` is omitted (inference graph).
* ``SRM`` (default, ``neuron="srm"``) -> the exact composite of three nodes per layer:
  ``<name>.psp`` a ``CubaLI`` with :math:`\tau_{syn} = \tau_{mem} = \tau_{sr}`, :math:`R = e\,\tau_{sr}`,
  :math:`w_{in} = 1`, :math:`v_{leak} = 0`; ``<name>.threshold`` a ``Threshold`` at :math:`\vartheta`;
  ``<name>.refractory`` a ``CubaLI`` with :math:`\tau_{syn} = \tau_{mem} = \tau_{ref}`,
  :math:`R = e\,\tau_{ref}`, :math:`w_{in} = -s_{ref}\vartheta`, on the recurrent edge
  ``threshold -> refractory -> threshold``.  Why exact: a ``CubaLI`` with equal time constants
  :math:`\tau` driven by one unit spike (a Dirac of area 1) at 0 gives

  .. math::

      I(t) = \frac{w_{in}}{\tau} e^{-t/\tau}, \qquad
      v(t) = \frac{R\, w_{in}}{\tau^2}\, t\, e^{-t/\tau} = \frac{R\, w_{in}}{e\, \tau}\,
             \frac{t}{\tau} e^{1 - t/\tau}

  so :math:`R w_{in} = e\tau` makes :math:`v` the alpha response :math:`\epsilon(t)` of pysrm, whose
  spike of amplitude ``1/Ts`` in one bin is a unit-area spike (``Ts * 1/Ts = 1``); the
  threshold node sums the two potentials, as pysrm's ``u`` is.  What NIR cannot say is recorded in
  the graph's metadata (below): pysrm samples both responses at ``t = k Ts`` from lag 0 and cuts
  them where ``|value| < tolerance`` (SLAYER's convention; the sampled responses are stored on the
  ``CubaLI`` nodes' metadata as ``pysrm_response``), fires at ``u >= theta (1 - 2^-17)`` (float32) and
  its delays interpolate linearly between bins; the surrogate parameters ``tau_rho``, ``scale_rho``.
* ``SRM`` with ``neuron="cubalif"``: one ``CubaLIF`` per layer, :math:`\tau_{syn} = \tau_{mem} =
  \tau_{sr}`, :math:`R = e\,\tau_{sr}`, :math:`w_{in} = 1`, threshold :math:`\vartheta`, reset to 0
  instead of the refractory response (an approximation; its cost is measured in ``docs/nir.md``).

Graph metadata: ``generator`` (``"pysrm <version>"``), ``time_unit`` (``"s"``), ``ts_s``,
``neuron_model`` (``"srm"`` or ``"cubalif"``), ``kernel_sampling`` (the SLAYER convention in words) and
``pysrm`` (a JSON string: version, ``ts``/``t_sample`` in ms, dtype, the shorthand, the neuron
parameters, and per layer its name, kind and node names).

**Import.** :func:`from_nir` reads chains ``Input -> ... -> Output`` of the nodes above.  The SRM composite (pysrm's
own files and any graph of the same structure) maps exactly; with pysrm's metadata the round trip
network -> file -> network is bitwise (the same layers, parameters, responses, plan).  Other tools'
neurons are mapped with a :class:`NIRApproximationWarning` naming the node and the approximation:

* ``CubaLIF``: the response to a unit spike is a difference of exponentials (an alpha function when
  :math:`\tau_{syn} = \tau_{mem}`); it becomes the alpha response with the same area and mean time,
  :math:`\tau_{sr} = (\tau_{syn} + \tau_{mem})/2` and gain :math:`g = R w_{in} / (e\, \tau_{sr})`, so
  :math:`\vartheta = (v_{th} - v_{leak}) / g`; the reset (to :math:`v_{reset}`) becomes the refractory
  response with :math:`\tau_{ref} = \tau_{mem}`, :math:`s_{ref} = (v_{th} - v_{reset}) / (v_{th} - v_{leak})`.
* ``LIF`` (no synaptic current): the exponential response :math:`(R/\tau) e^{-t/\tau}` becomes the alpha
  response of the same area and mean time, :math:`\tau_{sr} = \tau/2`, :math:`g = R/(e\,\tau_{sr})`; reset
  as above.
* ``IF`` (no leak): refused unless ``if_tau_sr`` (ms) is given; then its step response :math:`R` becomes
  an alpha response of that time constant and peak :math:`R` (:math:`g = R`); reset as above.

Anything else is an :class:`NIRError` naming the node, its type and why: a node type pysrm has no
layer for, a cycle other than the refractory loop, a branch, a non-zero bias, dilation, grouped
convolutions other than the pool above, parameters that differ across the neurons of a node,
non-finite values, shapes that do not chain (naming the edge).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

#: what to install for this module (from a clone / by the distribution's name)
INSTALL_HINT = ('NIR support needs the packages nir and h5py: pip install ".[nir]" in a clone of pysrm (or just '
                'pip install nir h5py)')

#: graph metadata key of pysrm's own record (a JSON string)
META_KEY = "pysrm"
#: version of that record's layout
META_FORMAT = 1

KERNEL_SAMPLING = ("pysrm/SLAYER: responses sampled at t = k*Ts from lag 0 and cut at the first sample with "
                   "|value| < tolerance and t > tau (stored per CubaLI as metadata 'pysrm_response'); psp(x)[t] = "
                   "Ts*sum_k eps[k] x[t-k] with spikes of amplitude 1/Ts; fires where u >= theta*(1-2^-17) "
                   "(float32; 2^-40 float64); the refractory response starts at the spike's bin; delays "
                   "interpolate linearly between bins")

NEURON_MODELS = ("srm", "cubalif")

_MS = 1e-3  # seconds per ms


class NIRError(ValueError):
    """A NIR graph or file that pysrm cannot import or write; the message names the file, node or edge."""


class NIRApproximationWarning(UserWarning):
    """A NIR node imported as an SRM layer that only approximates it (the message names node and mapping)."""


def _nir():
    """The ``nir`` package, or ImportError saying what to install."""
    try:
        import nir  # the absolute package (this module is pysrm.nir)
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return nir


# ============================================================================================ export
def _finite(name, a):
    a = np.asarray(a)
    if not np.all(np.isfinite(a)):
        raise NIRError(f"{name} holds non-finite values (NaN or inf); nothing written")
    return a


def _host(p):
    return p.data.copy_to_host() if p.on_device else np.array(p.data)


def to_nir(network, neuron: str = "srm"):
    r"""The NIR graph of ``network`` (an inference graph: dropout omitted).

    Parameters
    ----------
    network : pysrm.network.Network
        any network of Dense, Conv, Pool, SRM, Delay, Dropout (omitted) and Flatten layers, on the CPU or
        the GPU (parameters are copied to the host)
    neuron : {"srm", "cubalif"}
        ``"srm"``: every SRM layer as the exact CubaLI + Threshold + refractory CubaLI composite (module
        docstring); ``"cubalif"``: one CubaLIF per layer (reset instead of the refractory response: an
        approximation)

    Returns
    -------
    nir.NIRGraph
        nodes named after the layers (``dense1``, ``dense1.srm.psp`` ...), ``input`` and ``output``;
        times in seconds; weights in the network's dtype (float32 or float64); the metadata of the module
        docstring

    Raises
    ------
    ImportError
        ``nir`` is not installed (the message says what to install)
    NIRError
        a non-finite parameter (naming it), a layer type NIR has no node for, a conv after a dense layer
    ValueError
        an unknown ``neuron``
    """
    nir = _nir()
    from . import __version__
    from .layers import SRM, Conv, Delay, Dense, Dropout, Flatten, Pool

    if neuron not in NEURON_MODELS:
        raise ValueError(f"unknown neuron model {neuron!r}; expected one of {', '.join(map(repr, NEURON_MODELS))}")
    sim = network.sim
    dtype = np.dtype(network.dtype)
    nodes, edges, layers_meta = {}, [], []
    shape = tuple(int(s) for s in network.input_shape)
    first_syn = next((l for l in network.layers if isinstance(l, (Dense, Conv, Pool))), None)
    flat = shape[1:] == (1, 1) and isinstance(first_syn, Dense)

    def nshape(shp, is_flat):
        return np.array([shp[0]] if is_flat else list(shp), dtype=np.int64)

    nodes["input"] = nir.Input(input_type={"input": nshape(shape, flat)})
    prev = "input"

    def add(name, node):
        nonlocal prev
        if name in nodes:
            raise NIRError(f"layer name {name!r} appears twice; NIR node names must be unique")
        nodes[name] = node
        edges.append((prev, name))
        prev = name

    for layer in network.layers:
        kind = type(layer).__name__
        if isinstance(layer, Dropout):
            continue
        if isinstance(layer, Dense):
            w = _finite(f"parameter {layer.weight.name}", _host(layer.weight))
            if not flat:
                add(f"{layer.name}.flatten", nir.Flatten(input_type={"input": nshape(shape, False)}, start_dim=0,
                                                         end_dim=-1))
            add(layer.name, nir.Linear(weight=w))
            layers_meta.append({"name": layer.name, "kind": "dense", "nodes": [prev]})
            shape, flat = layer.output_shape(shape), True
        elif isinstance(layer, Conv):
            if flat:
                raise NIRError(f"layer {layer.name!r} (Conv) follows a dense layer; NIR has no node to bring the "
                               f"dense output {shape} back to an image")
            w = _finite(f"parameter {layer.weight.name}", _host(layer.weight))
            add(layer.name, nir.Conv2d(input_shape=(shape[1], shape[2]), weight=w, stride=layer.stride,
                                       padding=layer.padding, dilation=1, groups=1,
                                       bias=np.zeros(w.shape[0], dtype=w.dtype)))
            layers_meta.append({"name": layer.name, "kind": "conv", "nodes": [prev]})
            shape = layer.output_shape(shape)
        elif isinstance(layer, Pool):
            if flat:
                raise NIRError(f"layer {layer.name!r} (Pool) follows a dense layer; NIR has no node to bring the "
                               f"dense output {shape} back to an image")
            k, wp = layer.kernel, float(_finite(f"weight of pool layer {layer.name!r}", layer.weight))
            out = layer.output_shape(shape)
            py, px = out[1] * k - shape[1], out[2] * k - shape[2]
            if py == 0 and px == 0:
                add(layer.name, nir.SumPool2d(kernel_size=np.array([k, k]), stride=np.array([k, k]),
                                              padding=np.array([0, 0])))
                first = prev
                add(f"{layer.name}.weight", nir.Scale(scale=np.full(out, wp, dtype=np.float64)))
                layers_meta.append({"name": layer.name, "kind": "pool", "kernel": k, "weight": wp,
                                    "nodes": [first, prev]})
            else:  # pysrm's bottom/right zero padding as the depthwise conv that computes it (module docstring)
                c = shape[0]
                w = np.zeros((c, c, k + py, k + px), dtype=dtype)
                for ch in range(c):
                    w[ch, ch, py:, px:] = wp
                add(layer.name, nir.Conv2d(input_shape=(shape[1], shape[2]), weight=w, stride=k, padding=(py, px),
                                           dilation=1, groups=1, bias=np.zeros(c, dtype=dtype)))
                layers_meta.append({"name": layer.name, "kind": "pool", "kernel": k, "weight": wp,
                                    "nodes": [prev], "as": "conv"})
            shape = out
        elif isinstance(layer, SRM):
            n = layer.neuron
            if n.tau_sr <= 0 or n.tau_ref <= 0:
                raise NIRError(f"layer {layer.name!r}: time constants must be positive")
            full = nshape(shape, flat)
            ones = np.ones(tuple(full), dtype=np.float64)
            tau_s, tau_r = n.tau_sr * _MS, n.tau_ref * _MS
            meta = {"name": layer.name, "kind": "srm", "neuron": n.to_dict()}
            if neuron == "srm":
                psp, thr, ref = f"{layer.name}.psp", f"{layer.name}.threshold", f"{layer.name}.refractory"
                add(psp, nir.CubaLI(tau_syn=tau_s * ones, tau_mem=tau_s * ones, r=math.e * tau_s * ones,
                                    v_leak=0 * ones, w_in=ones.copy(),
                                    metadata={"pysrm_response": np.asarray(layer.srm, dtype=np.float64)}))
                add(thr, nir.Threshold(threshold=n.theta * ones))
                nodes[ref] = nir.CubaLI(tau_syn=tau_r * ones, tau_mem=tau_r * ones, r=math.e * tau_r * ones,
                                        v_leak=0 * ones, w_in=-n.scale_ref * n.theta * ones,
                                        metadata={"pysrm_response": np.asarray(layer.ref, dtype=np.float64)})
                edges.extend([(thr, ref), (ref, thr)])
                meta["nodes"] = [psp, thr, ref]
            else:
                add(f"{layer.name}.cubalif",
                    nir.CubaLIF(tau_syn=tau_s * ones, tau_mem=tau_s * ones, r=math.e * tau_s * ones, v_leak=0 * ones,
                                v_threshold=n.theta * ones, v_reset=0 * ones, w_in=ones.copy()))
                meta["nodes"] = [prev]
            layers_meta.append(meta)
        elif isinstance(layer, Delay):
            d = _finite(f"parameter {layer.delay.name}", _host(layer.delay)).astype(np.float64)
            full = tuple(nshape(shape, flat))
            d = np.broadcast_to(d.reshape(d.shape[0], *d.shape[1:]), shape).reshape(full) * _MS
            add(layer.name, nir.Delay(delay=np.ascontiguousarray(d)))
            layers_meta.append({"name": layer.name, "kind": "delay", "per": layer.per, "nodes": [prev]})
        elif isinstance(layer, Flatten):
            if not flat:
                add(layer.name, nir.Flatten(input_type={"input": nshape(shape, False)}, start_dim=0, end_dim=-1))
                layers_meta.append({"name": layer.name, "kind": "flatten", "nodes": [prev]})
            shape, flat = layer.output_shape(shape), True
        else:
            raise NIRError(f"layer {layer.name!r} of type {kind}: NIR export knows Dense, Conv, Pool, SRM, Delay, "
                           f"Dropout and Flatten layers")
    nodes["output"] = nir.Output(output_type={"output": nshape(shape, flat)})
    edges.append((prev, "output"))
    record = {"format": META_FORMAT, "pysrm_version": __version__, "ts_ms": sim.ts, "t_sample_ms": sim.t_sample,
              "dtype": dtype.name, "spec": network.spec, "neuron_model": neuron,
              "input_shape": list(network.input_shape), "layers": layers_meta}
    metadata = {"generator": f"pysrm {__version__}", "time_unit": "s", "ts_s": sim.ts * _MS, "neuron_model": neuron,
                "kernel_sampling": KERNEL_SAMPLING, META_KEY: json.dumps(record)}
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata, type_check=True)


def write_nir(network, path, neuron: str = "srm", overwrite: bool = False) -> Path:
    """Write ``network``'s NIR graph (:func:`to_nir`) to ``path`` (HDF5, ``nir.write``).

    The graph is made first (errors leave the disk untouched), written to a temporary file next to
    ``path`` and read back with ``nir.read``; only then is it moved to ``path``.  Returns the path.

    Raises
    ------
    FileExistsError
        ``path`` exists and ``overwrite`` is False (nothing is written)
    OSError
        writing failed, or the folder of ``path`` cannot be made (the temporary file is removed; ``path`` is
        untouched)
    ImportError, NIRError, ValueError
        as :func:`to_nir`
    """
    nir = _nir()
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists and is kept (to replace it: overwrite=True; pysrm export "
                              f"--overwrite)")
    graph = to_nir(network, neuron=neuron)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"cannot write {path}: its folder {parent} cannot be made ({e.strerror or e})") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # as open() would make it (mkstemp makes it private: 0600)
    try:
        nir.write(tmp, graph)
        nir.read(tmp)  # what every NIR reader does first (type check included)
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails if path appeared meanwhile: never replaces a file
            os.unlink(tmp)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_nir(path):
    """The ``nir.NIRGraph`` in the file ``path`` (``nir.read``, with its type check).

    Raises
    ------
    FileNotFoundError
        no such file
    NIRError
        the file is not a readable NIR file (truncated, not HDF5, an unknown node type, failing nir's type
        check); the message names the file and nir's or h5py's reason
    """
    nir = _nir()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such NIR file")
    try:
        return nir.read(path)
    except Exception as e:  # h5py's OSError, nir's AssertionError/ValueError/KeyError/TypeError
        reason = str(e) or type(e).__name__
        unknown = _unknown_node_types(path, nir)
        if unknown:
            name, kind = unknown[0]
            reason = f"node {name!r} has type {kind!r}, which NIR (nir {nir.version}) does not define"
        elif isinstance(e, AssertionError):
            reason = f"a malformed node ({type(e).__name__}: {reason})"
        raise NIRError(f"{path}: not a NIR graph pysrm can read: {reason}") from e


def _unknown_node_types(path, nir) -> list:
    """``[(node path, type)]`` of the nodes in the HDF5 file whose type nir does not know (empty when the
    file cannot be opened or walked)."""
    import h5py
    known = set(nir.ir.__all__) | {"NIRGraph"}
    found = []

    def walk(group, prefix):
        for key in group:
            item = group[key]
            if not isinstance(item, h5py.Group) or key == "metadata":
                continue
            if "type" in item and isinstance(item["type"], h5py.Dataset):
                kind = item["type"][()]
                kind = kind.decode("utf8", "replace") if isinstance(kind, bytes) else str(kind)
                if kind not in known:
                    found.append((prefix + key, kind))
            walk(item, prefix + key + "/" if key != "nodes" else prefix)

    try:
        with h5py.File(path, "r") as f:
            if "node" in f:
                walk(f["node"], "")
    except (OSError, KeyError, ValueError):
        return []
    return found


# ============================================================================================ import
_SYNAPSES = ("Linear", "Affine", "Conv2d", "SumPool2d", "Scale", "Flatten", "Delay")
_NEURONS = ("CubaLI", "Threshold", "CubaLIF", "LIF", "IF")
_KNOWN = _SYNAPSES + _NEURONS + ("Input", "Output")
_WHY_NOT = {"LI": "a leaky integrator without threshold: its output is a potential, not spikes",
            "I": "an integrator without threshold: its output is a potential, not spikes",
            "AvgPool2d": "pysrm pools by sums with one weight (SumPool2d followed by Scale)",
            "Conv1d": "pysrm convolutions are 2-D",
            "NIRGraph": "nested sub-graphs are not supported; flatten them into one graph"}


def _uniform(name, kind, field, a, dtype=np.float64):
    """The single value of a per-neuron parameter array (error if it varies or is not finite)."""
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise NIRError(f"node {name!r} ({kind}): {field} has dtype {a.dtype}; expected numbers")
    a = a.astype(dtype)
    if a.size == 0:
        raise NIRError(f"node {name!r} ({kind}): {field} is empty")
    if not np.all(np.isfinite(a)):
        raise NIRError(f"node {name!r} ({kind}): {field} holds non-finite values (NaN or inf)")
    v = a.flat[0]
    if not np.all(a == v):
        if np.allclose(a, v, rtol=1e-6, atol=0):
            return float(np.mean(a))
        raise NIRError(f"node {name!r} ({kind}): {field} varies across neurons (from {a.min():g} to {a.max():g}); "
                       f"a pysrm SRM layer has one value per layer")
    return float(v)


def _weights(name, kind, field, a, dtype):
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise NIRError(f"node {name!r} ({kind}): {field} has dtype {a.dtype}; expected floating point numbers")
    if not np.all(np.isfinite(a)):
        raise NIRError(f"node {name!r} ({kind}): {field} holds non-finite values (NaN or inf)")
    return np.ascontiguousarray(a, dtype=dtype)


def _zero_bias(name, kind, node):
    b = getattr(node, "bias", None)
    if b is None:
        return
    b = np.asarray(b)
    if b.dtype.kind in "fiu" and not np.all(np.isfinite(b)):
        raise NIRError(f"node {name!r} ({kind}): bias holds non-finite values (NaN or inf)")
    if np.any(b != 0):
        raise NIRError(f"node {name!r} ({kind}): non-zero bias (max |b| = {np.abs(b).max():g}); pysrm synapses have "
                       f"no bias (a constant input current)")


def _pair(name, kind, field, v):
    if isinstance(v, str):
        return v
    a = np.atleast_1d(np.asarray(v)).astype(np.int64).ravel()
    if a.size == 1:
        a = np.repeat(a, 2)
    if a.size != 2:
        raise NIRError(f"node {name!r} ({kind}): {field} {v!r} is not one or two integers")
    return int(a[0]), int(a[1])


def _shape_str(s):
    return "(" + ", ".join(str(int(v)) for v in s) + ")"


class _Importer:
    """One import: the graph, its chain of nodes, and the layers made from them (state of this import only)."""

    def __init__(self, graph, origin: str, ts, t_sample, if_tau_sr, dtype):
        self.graph, self.origin = graph, origin
        self.nodes = dict(graph.nodes)
        self.edges = [(str(a), str(b)) for a, b in graph.edges]
        meta = getattr(graph, "metadata", None) or {}
        raw = meta.get(META_KEY)
        self.record = None
        if raw is not None:
            try:
                self.record = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
            except (TypeError, ValueError) as e:
                raise NIRError(f"{origin}: graph metadata '{META_KEY}' is not pysrm's JSON record ({e})") from e
        rec = self.record or {}
        self.ts = float(ts if ts is not None else rec.get("ts_ms", 1.0))
        self.t_sample = float(t_sample if t_sample is not None else rec.get("t_sample_ms", 300.0))
        self.exact_time = self.record is not None and self.ts == rec.get("ts_ms")
        self.if_tau_sr = if_tau_sr
        if dtype is None:
            dtype = rec.get("dtype", "float32")
        self.dtype = np.dtype(dtype)
        if self.dtype.type not in (np.float32, np.float64):
            raise TypeError(f"dtype must be float32 or float64, got {self.dtype}")
        self.layer_meta = {}
        for lm in rec.get("layers", []):
            for nname in lm.get("nodes", []):
                self.layer_meta[nname] = lm

    def err(self, msg):
        return NIRError(f"{self.origin}: {msg}")

    def kind(self, name):
        return type(self.nodes[name]).__name__

    # -- structure ------------------------------------------------------------------------------------
    def chain(self):
        """The nodes from Input to Output in order, each item ``(name, refractory_or_None)``."""
        for name in self.nodes:
            k = self.kind(name)
            if k not in _KNOWN:
                why = _WHY_NOT.get(k, "pysrm has no layer for it")
                raise self.err(f"node {name!r} of type {k} cannot be imported: {why}")
        for a, b in self.edges:
            for n in (a, b):
                if n not in self.nodes:
                    raise self.err(f"edge ({a!r}, {b!r}) names node {n!r}, which the graph does not have")
        succ = {n: [] for n in self.nodes}
        pred = {n: [] for n in self.nodes}
        for a, b in self.edges:
            succ[a].append(b)
            pred[b].append(a)
        inputs = [n for n in self.nodes if self.kind(n) == "Input"]
        outputs = [n for n in self.nodes if self.kind(n) == "Output"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise self.err(f"expected one Input and one Output node, found {len(inputs)} Input ({inputs}) and "
                           f"{len(outputs)} Output ({outputs})")
        # the refractory loops of SRM composites: Threshold t <-> CubaLI r (r fed only by t, feeding only t)
        self.refractory = {}
        loop_nodes = set()
        for t in self.nodes:
            if self.kind(t) != "Threshold":
                continue
            for r in pred[t]:
                if self.kind(r) == "CubaLI" and pred[r] == [t] and succ[r] == [t]:
                    self.refractory[t] = r
                    loop_nodes.add(r)
        # any other cycle is an error naming it
        color = {}

        def visit(n, path):
            color[n] = 1
            for m in succ[n]:
                if m in loop_nodes or (n in loop_nodes):
                    continue
                if color.get(m) == 1:
                    cyc = path[path.index(m):] + [m]
                    raise self.err(f"cycle {' -> '.join(map(repr, cyc))} ({', '.join(self.kind(c) for c in cyc[:-1])}):"
                                   f" pysrm networks are feed-forward; the only cycle it represents is the refractory "
                                   f"loop Threshold -> CubaLI -> Threshold of its SRM neuron")
                if color.get(m) is None:
                    visit(m, path + [m])
            color[n] = 2

        for n in self.nodes:
            if color.get(n) is None and n not in loop_nodes:
                visit(n, [n])
        order, cur, seen = [], inputs[0], set()
        while True:
            order.append(cur)
            seen.add(cur)
            if cur == outputs[0]:
                break
            nxt = [m for m in succ[cur] if m not in loop_nodes]
            if not nxt:
                raise self.err(f"node {cur!r} ({self.kind(cur)}) has no outgoing edge: the chain from "
                               f"{inputs[0]!r} does not reach the Output {outputs[0]!r}")
            if len(nxt) > 1:
                raise self.err(f"node {cur!r} ({self.kind(cur)}) branches to {nxt}; pysrm networks are chains")
            m = nxt[0]
            ins = [p for p in pred[m] if p not in loop_nodes]
            if len(ins) > 1:
                raise self.err(f"node {m!r} ({self.kind(m)}) sums several inputs {ins}; pysrm networks are chains")
            cur = m
        unused = [n for n in self.nodes if n not in seen and n not in loop_nodes]
        if unused:
            raise self.err(f"nodes {unused} are not on the chain from {inputs[0]!r} to {outputs[0]!r}")
        return order

    # -- layers ---------------------------------------------------------------------------------------
    def build(self):
        from .layers import SRM, Delay, Dense, Flatten, Pool
        from .network import Network
        from .params import SimParams
        self.sim = SimParams(self.ts, self.t_sample)
        order = self.chain()
        rng = np.random.default_rng(0)
        inp = self.nodes[order[0]]
        ishape = np.asarray(inp.input_type["input"]).astype(np.int64).ravel()
        if ishape.size == 1:
            shape = (int(ishape[0]), 1, 1)
        elif ishape.size == 3:
            shape = tuple(int(v) for v in ishape)
        else:
            raise self.err(f"Input node {order[0]!r} has shape {_shape_str(ishape)}; expected (N,) or (C, H, W)")
        if min(shape) < 1:
            raise self.err(f"Input node {order[0]!r} has shape {_shape_str(ishape)}; sizes must be >= 1")
        input_shape = shape
        nshape = tuple(int(v) for v in ishape)  # the NIR shape flowing along the chain
        layers, neurons = [], []
        i, prev = 1, order[0]

        def lname(node_name, kind):
            """The layer's name: pysrm's (from the metadata), else the node's."""
            lm = self.layer_meta.get(node_name)
            return lm["name"] if lm is not None else node_name

        def edge(a, b, got, want):
            raise self.err(f"edge {a!r} -> {b!r}: {a!r} ({self.kind(a)}) gives shape {_shape_str(got)} but {b!r} "
                           f"({self.kind(b)}) expects {_shape_str(want)}")

        while i < len(order):
            name = order[i]
            node, k = self.nodes[name], self.kind(name)
            if k == "Output":
                want = np.asarray(node.output_type["output"]).astype(np.int64).ravel()
                if tuple(want) != tuple(nshape):
                    edge(prev, name, nshape, want)
                if not layers or not isinstance(layers[-1], (SRM,)) and not (
                        isinstance(layers[-1], Delay) and len(layers) > 1 and isinstance(layers[-2], SRM)):
                    raise self.err(f"the node before Output {name!r} is {prev!r} ({self.kind(prev)}); a pysrm "
                                   f"network's output must be spikes (a neuron node)")
                break
            if k == "Flatten":
                if len(nshape) == 1:
                    pass
                else:
                    it = node.input_type.get("input") if isinstance(node.input_type, dict) else None
                    if it is not None and tuple(np.asarray(it).astype(np.int64).ravel()) != nshape:
                        edge(prev, name, nshape, np.asarray(it).ravel())
                    sd, ed = int(node.start_dim), int(node.end_dim)
                    if not (sd == 0 and ed in (-1, len(nshape) - 1)):
                        raise self.err(f"node {name!r} (Flatten): start_dim {sd}, end_dim {ed}; pysrm flattens a "
                                       f"whole sample (start_dim 0, end_dim -1)")
                    nxt = self.kind(order[i + 1])
                    if nxt not in ("Linear", "Affine"):  # a dense layer flattens its input itself
                        layers.append(Flatten())
                        layers[-1].name = lname(name, "flatten")
                        shape = (int(np.prod(shape)), 1, 1)
                    nshape = (int(np.prod(nshape)),)
            elif k in ("Linear", "Affine"):
                _zero_bias(name, k, node)
                w = _weights(name, k, "weight", node.weight, self.dtype)
                if w.ndim != 2:
                    raise self.err(f"node {name!r} ({k}): weight has shape {_shape_str(w.shape)}; expected (out, in)")
                if len(nshape) != 1:
                    edge(prev, name, nshape, (w.shape[1],))
                if w.shape[1] != nshape[0]:
                    edge(prev, name, nshape, (w.shape[1],))
                layer = Dense(shape, w.shape[0], rng, dtype=self.dtype, name=lname(name, "dense"))
                layer.weight.data[...] = w
                layers.append(layer)
                shape, nshape = layer.output_shape(shape), (w.shape[0],)
            elif k == "Conv2d":
                layer, shape, nshape = self.conv(name, node, prev, shape, nshape, rng, lname)
                layers.append(layer)
            elif k == "SumPool2d":
                if len(nshape) != 3:
                    edge(prev, name, nshape, ("C", "H", "W"))
                ks = _pair(name, k, "kernel_size", node.kernel_size)
                st = _pair(name, k, "stride", node.stride)
                pd = _pair(name, k, "padding", node.padding)
                if ks[0] != ks[1] or st != ks or pd != (0, 0):
                    raise self.err(f"node {name!r} (SumPool2d): kernel {ks}, stride {st}, padding {pd}; pysrm pools "
                                   f"square windows with stride = kernel and no padding")
                kk = ks[0]
                if nshape[1] % kk or nshape[2] % kk:
                    raise self.err(f"node {name!r} (SumPool2d): kernel {kk} does not divide the input {nshape[1:]} "
                                   f"(NIR drops the remainder; pysrm pads it, as SLAYER does)")
                weight = 1.0
                if i + 1 < len(order) and self.kind(order[i + 1]) == "Scale":
                    i += 1
                    sname = order[i]
                    sc = np.asarray(self.nodes[sname].scale)
                    out = (nshape[0], nshape[1] // kk, nshape[2] // kk)
                    if sc.ndim > 0 and sc.size > 1 and tuple(sc.shape) != out:
                        edge(name, sname, out, sc.shape)
                    weight = _uniform(sname, "Scale", "scale", sc)
                layer = Pool(shape, kk, 1.0, name=lname(name, "pool"))
                layer.weight = weight
                layers.append(layer)
                shape = layer.output_shape(shape)
                nshape = shape
            elif k == "Scale":
                raise self.err(f"node {name!r} (Scale) follows {prev!r} ({self.kind(prev)}); pysrm has an element-wise "
                               f"scale only as the weight of a sum pool (SumPool2d -> Scale)")
            elif k == "Delay":
                d = _weights(name, k, "delay", node.delay, np.float64)
                if tuple(d.shape) != tuple(nshape):
                    edge(prev, name, nshape, d.shape)
                if np.any(d < 0):
                    raise self.err(f"node {name!r} (Delay): negative delays (min {d.min():g} s)")
                lm = self.layer_meta.get(name, {})
                d_ms = (d / _MS).astype(self.dtype).reshape(shape)
                per = lm.get("per", "neuron")
                layer = Delay(shape, self.sim, per=per, dtype=self.dtype, name=lname(name, "delay"))
                if per == "channel":
                    ch = d_ms[:, :1, :1]
                    if not np.all(d_ms == ch):
                        raise self.err(f"node {name!r} (Delay): pysrm's metadata says per-channel delays, but they "
                                       f"differ within a channel")
                    d_ms = ch
                layer.delay.data[...] = d_ms
                layers.append(layer)
            elif k in ("CubaLI", "Threshold", "CubaLIF", "LIF", "IF"):
                srm, i = self.neuron(order, i, name, k, nshape, lname)
                layers.append(srm)
                neurons.append(srm.neuron)
            else:  # pragma: no cover - chain() refused unknown types
                raise self.err(f"node {name!r} of type {k} cannot be imported")
            prev = order[i]
            i += 1
        if not neurons:
            raise self.err("the graph has no neuron node")
        rec = self.record or {}
        return Network(layers, input_shape, neurons[0], self.sim, spec=rec.get("spec"))

    def conv(self, name, node, prev, shape, nshape, rng, lname):
        from .layers import Conv
        k = "Conv2d"
        if len(nshape) != 3:
            edge_want = ("C", "H", "W")
            raise self.err(f"edge {prev!r} -> {name!r}: {prev!r} gives shape {_shape_str(nshape)} but {name!r} "
                           f"(Conv2d) expects {edge_want}")
        _zero_bias(name, k, node)
        w = _weights(name, k, "weight", node.weight, self.dtype)
        if w.ndim != 4:
            raise self.err(f"node {name!r} (Conv2d): weight has shape {_shape_str(w.shape)}; expected (out, in, kh, kw)")
        groups = int(np.asarray(node.groups).ravel()[0])
        dil = _pair(name, k, "dilation", node.dilation)
        st = _pair(name, k, "stride", node.stride)
        pd = _pair(name, k, "padding", node.padding)
        if dil != (1, 1):
            raise self.err(f"node {name!r} (Conv2d): dilation {dil}; pysrm convolutions have dilation 1")
        if w.shape[1] * groups != nshape[0]:
            raise self.err(f"edge {prev!r} -> {name!r}: {prev!r} gives {nshape[0]} channels but {name!r} (Conv2d) "
                           f"expects {w.shape[1] * groups} (weight {_shape_str(w.shape)}, groups {groups})")
        ins = getattr(node, "input_shape", None)
        if ins is not None and tuple(np.asarray(ins).astype(np.int64).ravel()) != tuple(nshape[1:]):
            raise self.err(f"edge {prev!r} -> {name!r}: {prev!r} gives shape {_shape_str(nshape)} but {name!r} "
                           f"(Conv2d) has input_shape {_shape_str(np.asarray(ins).ravel())}")
        if groups != 1 or (self.layer_meta.get(name) or {}).get("kind") == "pool":
            return self.pool_conv(name, node, w, groups, st, pd, shape, nshape, lname)
        kh, kw = w.shape[2], w.shape[3]
        if pd == "valid":
            pd = (0, 0)
        elif pd == "same":
            if st != (1, 1) or kh % 2 == 0 or kw % 2 == 0:
                raise self.err(f"node {name!r} (Conv2d): padding 'same' with stride {st} and kernel {kh}x{kw}; pysrm "
                               f"needs a symmetric integer padding")
            pd = (kh // 2, kw // 2)
        if kh != kw or st[0] != st[1] or pd[0] != pd[1]:
            raise self.err(f"node {name!r} (Conv2d): kernel {kh}x{kw}, stride {st}, padding {pd}; pysrm convolutions "
                           f"have square kernels and equal strides and paddings in both directions")
        if min(st) < 1 or min(pd) < 0:
            raise self.err(f"node {name!r} (Conv2d): stride {st} / padding {pd} out of range")
        layer = Conv(shape, w.shape[0], kh, rng, stride=st[0], padding=pd[0], dtype=self.dtype,
                     name=lname(name, "conv"))
        layer.weight.data[...] = w
        out = layer.output_shape(shape)
        return layer, out, out

    def pool_conv(self, name, node, w, groups, st, pd, shape, nshape, lname):
        """A Conv2d that is pysrm's sum pool with bottom/right padding: depthwise (``groups`` = channels) or,
        as pysrm writes it, ``groups = 1`` with zero weights between different channels (module docstring)."""
        from .layers import Pool
        c = nshape[0]
        why = ("pysrm imports a grouped Conv2d only as its own sum pool (groups = channels, or groups 1 with zero "
               "weights across channels; one weight on the last k x k block of a (k+p) x (k+p) kernel, padding p, "
               "stride k)")
        cin = 1 if groups != 1 else c
        if groups not in (1, c) or w.shape[0] != c or w.shape[1] != cin or isinstance(pd, str) or st[0] != st[1]:
            raise self.err(f"node {name!r} (Conv2d): groups {groups}, weight {_shape_str(w.shape)}; {why}")
        kk = st[0]
        py, px = pd
        if w.shape[2] != kk + py or w.shape[3] != kk + px:
            raise self.err(f"node {name!r} (Conv2d): groups {groups}, kernel {w.shape[2:]}; {why}")
        if groups == 1:  # the diagonal over channels; everything else must be zero
            off = w.copy()
            off[np.arange(c), np.arange(c)] = 0
            if np.any(off != 0):
                raise self.err(f"node {name!r} (Conv2d): weights across channels; {why}")
            w = w[np.arange(c), np.arange(c)][:, None]
        block = w[:, :, py:, px:]
        rest = w.copy()
        rest[:, :, py:, px:] = 0
        wp = float(block.flat[0])
        if np.any(rest != 0) or np.any(block != block.flat[0]):
            raise self.err(f"node {name!r} (Conv2d): grouped weights that are not one pool weight; {why}")
        if math.ceil(nshape[1] / kk) * kk - nshape[1] != py or math.ceil(nshape[2] / kk) * kk - nshape[2] != px:
            raise self.err(f"node {name!r} (Conv2d): padding {pd} does not complete the input {nshape[1:]} to a "
                           f"multiple of {kk}; {why}")
        lm = self.layer_meta.get(name)
        if lm is not None and "weight" in lm:  # the float64 weight (the conv holds it in the network's dtype)
            if np.asarray(lm["weight"], dtype=w.dtype) != wp:
                raise self.err(f"node {name!r} (Conv2d): weight {wp!r} differs from pysrm's metadata {lm['weight']!r}")
            wp = float(lm["weight"])
        layer = Pool(shape, kk, 1.0, name=lname(name, "pool"))
        layer.weight = wp
        out = layer.output_shape(shape)
        return layer, out, out

    def neuron(self, order, i, name, k, nshape, lname):
        """An SRM layer from the neuron node(s) at ``order[i]``; returns ``(layer, index of its last node)``."""
        from .layers import SRM
        from .params import NeuronParams

        def check_shape(n, node, fields):
            for f in fields:
                a = np.asarray(getattr(node, f))
                if a.ndim > 0 and a.size > 1 and tuple(a.shape) != tuple(nshape):
                    raise self.err(f"edge {order[i - 1]!r} -> {n!r}: {order[i - 1]!r} gives shape "
                                   f"{_shape_str(nshape)} but {n!r} ({type(node).__name__}) has {f} of shape "
                                   f"{_shape_str(a.shape)}")

        def u(n, node, f):
            return _uniform(n, type(node).__name__, f, getattr(node, f))

        lm = self.layer_meta.get(name) or {}
        if k == "Threshold":
            raise self.err(f"node {name!r} (Threshold) follows {order[i - 1]!r} ({self.kind(order[i - 1])}); pysrm "
                           f"reads a Threshold only after the CubaLI of its SRM neuron")
        if k == "CubaLI":
            node = self.nodes[name]
            check_shape(name, node, ("tau_syn", "tau_mem", "r", "v_leak", "w_in"))
            if i + 1 >= len(order) or self.kind(order[i + 1]) != "Threshold":
                raise self.err(f"node {name!r} (CubaLI) is not followed by a Threshold: a leaky integrator's output is "
                               f"a potential, not spikes")
            tname = order[i + 1]
            tnode = self.nodes[tname]
            check_shape(tname, tnode, ("threshold",))
            rname = self.refractory.get(tname)
            if rname is None:
                raise self.err(f"node {tname!r} (Threshold) has no refractory loop (a CubaLI fed by it and feeding it); "
                               f"pysrm's SRM neuron always has a refractory response")
            rnode = self.nodes[rname]
            check_shape(rname, rnode, ("tau_syn", "tau_mem", "r", "v_leak", "w_in"))
            ts_, tm_ = u(name, node, "tau_syn"), u(name, node, "tau_mem")
            rs_, rm_ = u(rname, rnode, "tau_syn"), u(rname, rnode, "tau_mem")
            for n_, a_, b_ in ((name, ts_, tm_), (rname, rs_, rm_)):
                if a_ <= 0 or b_ <= 0:
                    raise self.err(f"node {n_!r} (CubaLI): time constants must be positive (tau_syn {a_:g} s, "
                                   f"tau_mem {b_:g} s)")
                if abs(a_ - b_) > 1e-9 * max(a_, b_):
                    raise self.err(f"node {n_!r} (CubaLI): tau_syn {a_:g} s != tau_mem {b_:g} s; the SRM composite "
                                   f"needs equal time constants (an alpha response)")
            g = u(name, node, "r") * u(name, node, "w_in") / (math.e * ts_)
            g_ref = u(rname, rnode, "r") * u(rname, rnode, "w_in") / (math.e * rs_)
            level = u(tname, tnode, "threshold") - u(name, node, "v_leak") - u(rname, rnode, "v_leak")
            if g <= 0 or level <= 0 or g_ref >= 0:
                raise self.err(f"node {name!r}: gain {g:g}, threshold above rest {level:g}, refractory gain {g_ref:g}; "
                               f"an SRM neuron needs a positive gain and threshold and a negative refractory response")
            params = dict(theta=level / g, tau_sr=ts_ / _MS, tau_ref=rs_ / _MS, scale_ref=-g_ref / level)
            stored = lm.get("neuron") if lm.get("kind") == "srm" else None
            if stored is not None:  # pysrm's exact values (ms -> s -> ms is not bitwise); checked against the nodes
                for f, v in params.items():
                    if not math.isclose(v, stored[f], rel_tol=1e-6):
                        raise self.err(f"node {name!r}: {f} {v!r} from the nodes differs from pysrm's metadata "
                                       f"{stored[f]!r}")
                neuron = NeuronParams(**stored)
                if abs(g - 1.0) > 1e-9:
                    raise self.err(f"node {name!r}: gain {g!r}; pysrm writes R w_in = e tau_sr exactly")
            else:
                neuron = NeuronParams(**params)
            layer = SRM(neuron, self.sim, name=lname(name, "srm"))
            if self.exact_time:  # pysrm's own sampled responses (their cut tolerance is not a layer attribute)
                for attr, nn, tau in (("srm", node, neuron.tau_sr), ("ref", rnode, neuron.tau_ref)):
                    resp = (nn.metadata or {}).get("pysrm_response")
                    if resp is None:
                        continue
                    resp = np.asarray(resp, dtype=np.float64)[:self.sim.n_bins]
                    mult = 1.0 if attr == "srm" else -neuron.scale_ref * neuron.theta
                    kk = np.arange(resp.size) * self.sim.ts
                    want = mult * kk / tau * np.exp(1.0 - kk / tau)
                    if resp.size == 0 or not np.allclose(resp, want, rtol=1e-12, atol=1e-300):
                        raise self.err(f"node {name!r}: the stored pysrm_response of {attr} is not the alpha response "
                                       f"of tau {tau:g} ms")
                    setattr(layer, attr, resp)
            return layer, i + 1
        # CubaLIF / LIF / IF from other tools: approximations (module docstring)
        node = self.nodes[name]
        fields = {"CubaLIF": ("tau_syn", "tau_mem", "r", "v_leak", "v_threshold", "v_reset", "w_in"),
                  "LIF": ("tau", "r", "v_leak", "v_threshold", "v_reset"),
                  "IF": ("r", "v_threshold", "v_reset")}[k]
        check_shape(name, node, fields)
        vals = {f: u(name, node, f) for f in fields}
        v_leak = vals.get("v_leak", 0.0)
        if k == "CubaLIF":
            if vals["tau_syn"] <= 0 or vals["tau_mem"] <= 0:
                raise self.err(f"node {name!r} (CubaLIF): time constants must be positive")
            tau_sr = (vals["tau_syn"] + vals["tau_mem"]) / 2
            g = vals["r"] * vals["w_in"] / (math.e * tau_sr)
            tau_ref = vals["tau_mem"]
            how = (f"its synaptic and membrane filters (tau_syn {vals['tau_syn'] / _MS:g} ms, tau_mem "
                   f"{vals['tau_mem'] / _MS:g} ms) as the alpha response of the same area and mean time (tau_sr "
                   f"{tau_sr / _MS:g} ms)" + ("; exact for equal time constants"
                                              if math.isclose(vals["tau_syn"], vals["tau_mem"], rel_tol=1e-9) else ""))
        elif k == "LIF":
            if vals["tau"] <= 0:
                raise self.err(f"node {name!r} (LIF): tau must be positive")
            tau_sr = vals["tau"] / 2
            g = vals["r"] / (math.e * tau_sr)
            tau_ref = vals["tau"]
            how = (f"its exponential response (tau {vals['tau'] / _MS:g} ms) as the alpha response of the same area "
                   f"and mean time (tau_sr {tau_sr / _MS:g} ms)")
        else:
            if self.if_tau_sr is None:
                raise self.err(f"node {name!r} of type IF cannot be imported as is: an IF neuron never forgets its "
                               f"input, every SRM response decays; pass if_tau_sr (ms; pysrm eval --nir --if-tau-sr) "
                               f"to approximate its step response by an alpha response of that time constant")
            tau_sr = float(self.if_tau_sr) * _MS
            g = vals["r"]
            tau_ref = tau_sr
            how = (f"its step response (no leak) as an alpha response of tau_sr {tau_sr / _MS:g} ms with the same "
                   f"peak")
        level = vals["v_threshold"] - v_leak
        if g <= 0 or level <= 0:
            raise self.err(f"node {name!r} ({k}): gain {g:g} and threshold above rest {level:g} must be positive")
        scale_ref = (vals["v_threshold"] - vals["v_reset"]) / level
        if scale_ref <= 0:
            raise self.err(f"node {name!r} ({k}): v_reset {vals['v_reset']:g} is not below v_threshold")
        neuron = NeuronParams(theta=level / g, tau_sr=tau_sr / _MS, tau_ref=tau_ref / _MS, scale_ref=scale_ref)
        warnings.warn(NIRApproximationWarning(
            f"{self.origin}: node {name!r} ({k}) imported as an approximate SRM neuron: {how}, theta "
            f"{neuron.theta:g} = (v_threshold - v_leak) / gain {g:g}; the reset to v_reset as the refractory response "
            f"(tau_ref {neuron.tau_ref:g} ms, scale_ref {scale_ref:g}), which starts at 0 where a reset acts at once; "
            f"spikes on the {self.ts:g} ms grid"), stacklevel=4)
        return SRM(neuron, self.sim, name=lname(name, "srm")), i


def from_nir(source, ts: float | None = None, t_sample: float | None = None, if_tau_sr: float | None = None,
             dtype=None):
    r"""A pysrm :class:`~pysrm.network.Network` from a NIR graph or ``.nir`` file (module docstring).

    Parameters
    ----------
    source : nir.NIRGraph, str or path-like
        a graph, or a file that :func:`read_nir` reads
    ts : float, optional
        bin length in ms (default: pysrm's metadata, else 1 ms); a value other than the metadata's
        resamples the responses (no longer bitwise)
    t_sample : float, optional
        sample length in ms, bounding the responses (default: the metadata's, else 300 ms)
    if_tau_sr : float, optional
        ms: import IF neurons as SRM neurons of this ``tau_sr`` (an approximation); None refuses them
    dtype : float32 or float64, optional
        of the parameters (default: the metadata's, else float32)

    Returns
    -------
    Network
        layers as :meth:`Network.from_string <pysrm.network.Network.from_string>` makes them (names from
        the metadata, else the node names); ``spec`` from the metadata, else None

    Raises
    ------
    ImportError
        ``nir`` is not installed
    NIRError
        the graph cannot be represented (the message names the file, the node and its type, or the edge)

    Warns
    -----
    NIRApproximationWarning
        for every CubaLIF, LIF or IF node (what was approximated)
    """
    nir = _nir()
    if isinstance(source, nir.NIRGraph):
        graph, origin = source, "NIR graph"
    elif isinstance(source, (str, os.PathLike)):
        graph, origin = read_nir(source), str(source)
    else:
        raise TypeError(f"from_nir needs a nir.NIRGraph or a path, got {type(source).__name__}")
    return _Importer(graph, origin, ts, t_sample, if_tau_sr, dtype).build()
