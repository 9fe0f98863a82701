"""A synthetic, N-MNIST-like event dataset generated in pysrm (no files, no network).

Ten digit-like glyphs (``'0'`` .. ``'9'``, drawn as anti-aliased strokes) are
placed on a small retina (``size x size`` pixels, default 16x16, two
polarity channels) and "recorded" the way N-MNIST was: the image makes three
saccades along a triangle and a simulated DVS pixel emits ON events where its
brightness rises and OFF events where it falls, in proportion to the change,
plus sensor noise.  Per sample the generator draws

* the glyph's position (uniform jitter of +-``position_jitter`` = 0.75
  pixels), scale (+-6 %), rotation (+-8 degrees) and contrast (+-20 %);
* the saccade path: a closed triangle (centred on the glyph position) of
  random orientation and amplitude (1.2 .. 2.2 pixels per leg), traversed in
  ``3 * substeps`` linear steps spread evenly over the sample duration;
* the events: for each step, a Poisson number of events per pixel with mean
  ``gain * contrast * |brightness change|`` (ON for a rise, OFF for a fall),
  at uniformly random times inside the step;
* background noise: Poisson events at ``noise_rate`` per pixel, per
  polarity and per millisecond, at uniformly random times and polarities.

The events are integer microseconds in ``[0, duration * 1000)``.  With the
defaults (16x16x2, 100 ms at ``Ts = 1 ms``) a sample has about 1,100 events
and ~2 % of its 51,200 bins are active after binning.  Classes are balanced
(chance level 10 %); a nearest-centroid classifier on per-pixel event counts
reaches about 98 % test accuracy (it is 80-93 % with 1-1.5 pixel position
jitter, so the glyphs are not trivially aligned), and a small spiking network
can learn it quickly.  Generation is vectorised and deterministic for a given
``seed``: the train split uses the random stream ``(seed, 0)``, the test split
``(seed, 1)`` (same glyphs, different samples); 2,000 samples take about
0.5-1 s on one core.
"""
from __future__ import annotations

import numpy as np

from ..params import SimParams
from .base import EventDataset, check_int, check_sim, check_split
from .formats import EVENT_DTYPE

#: the class names of the synthetic dataset, in label order
CLASS_NAMES = tuple(str(d) for d in range(10))
DEFAULT_SIM = SimParams(1.0, 100.0)
DEFAULT_N = {"train": 2000, "test": 500}
_SUPER = 4  # template oversampling


def _arc(cx, cy, rx, ry, a0, a1, n=14):
    a = np.deg2rad(np.linspace(a0, a1, n))
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _glyph_strokes():
    """Polylines (u right, v down, in [0, 1]) of the ten glyphs."""
    P = np.array
    return [
        [_arc(0.5, 0.5, 0.28, 0.40, 0, 360, 24)],                                            # 0
        [P([[0.32, 0.27], [0.52, 0.1], [0.52, 0.9]]), P([[0.32, 0.9], [0.72, 0.9]])],        # 1
        [np.vstack([_arc(0.5, 0.32, 0.26, 0.22, 180, 390), P([[0.22, 0.9], [0.8, 0.9]])])],  # 2
        [_arc(0.48, 0.3, 0.25, 0.2, 200, 450), _arc(0.48, 0.7, 0.28, 0.2, 270, 520)],        # 3
        [P([[0.66, 0.9], [0.66, 0.1], [0.18, 0.64], [0.82, 0.64]])],                         # 4
        [np.vstack([P([[0.76, 0.1], [0.3, 0.1], [0.27, 0.47]]), _arc(0.5, 0.66, 0.26, 0.24, 215, 510)])],  # 5
        [P([[0.72, 0.12], [0.38, 0.3], [0.28, 0.68]]), _arc(0.5, 0.68, 0.22, 0.22, 0, 360, 20)],  # 6
        [P([[0.18, 0.1], [0.82, 0.1], [0.42, 0.9]])],                                        # 7
        [_arc(0.5, 0.29, 0.2, 0.19, 0, 360, 18), _arc(0.5, 0.7, 0.25, 0.21, 0, 360, 20)],    # 8
        [_arc(0.5, 0.32, 0.23, 0.22, 0, 360, 20), P([[0.73, 0.32], [0.6, 0.9]])],            # 9
    ]


def glyph_templates(resolution: int, width: float = 0.13) -> np.ndarray:
    """Anti-aliased images of the ten glyphs on the unit square.

    Parameters
    ----------
    resolution : int
        Pixels ``R`` per side.
    width : float, default 0.13
        Stroke width, as a fraction of the side.

    Returns
    -------
    ndarray, shape (10, R, R), float64
        Brightness in ``[0, 1]``; glyph ``k`` is the digit ``k``.
    """
    r = int(resolution)
    c = (np.arange(r) + 0.5) / r
    uu, vv = np.meshgrid(c, c)
    pts = np.stack([uu.ravel(), vv.ravel()], 1)
    out = np.zeros((10, r * r))
    aa = 1.5 / r
    for k, strokes in enumerate(_glyph_strokes()):
        d = np.full(r * r, np.inf)
        for line in strokes:
            a, b = line[:-1], line[1:]
            ab = b - a
            l2 = np.maximum((ab ** 2).sum(1), 1e-12)
            s = np.clip(((pts[:, None, :] - a[None]) * ab[None]).sum(2) / l2[None], 0, 1)
            q = a[None] + s[..., None] * ab[None]
            d = np.minimum(d, np.sqrt(((pts[:, None, :] - q) ** 2).sum(2)).min(1))
        out[k] = np.clip((width / 2 - d) / aa + 0.5, 0, 1)
    return out.reshape(10, r, r)


def _sample_bilinear(img, u, v):
    """Bilinear lookup of per-sample templates ``img (n, R, R)`` at template coords ``u, v (n, ...)``.

    Coordinates are in template pixels (pixel centres at ``k + 0.5``); the
    image is zero outside.
    """
    n, r, _ = img.shape
    pad = np.zeros((n, r + 2, r + 2), dtype=np.float32)
    pad[:, 1:-1, 1:-1] = img
    flat = pad.reshape(n, -1)
    uf = np.floor(u - 0.5)
    vf = np.floor(v - 0.5)
    fu = (u - 0.5 - uf).astype(np.float32)
    fv = (v - 0.5 - vf).astype(np.float32)
    # +1 for the zero border; clipping lands outside lookups on the border
    u0 = np.clip(uf.astype(np.int64) + 1, 0, r + 1)
    u1 = np.clip(uf.astype(np.int64) + 2, 0, r + 1)
    v0 = np.clip(vf.astype(np.int64) + 1, 0, r + 1) * (r + 2)
    v1 = np.clip(vf.astype(np.int64) + 2, 0, r + 1) * (r + 2)
    base = (np.arange(n) * (r + 2) * (r + 2)).reshape((n,) + (1,) * (u.ndim - 1))
    flat = flat.ravel()
    top = flat[base + v0 + u0] * (1 - fu) + flat[base + v0 + u1] * fu
    bot = flat[base + v1 + u0] * (1 - fu) + flat[base + v1 + u1] * fu
    return top * (1 - fv) + bot * fv


def generate(n_samples: int, size: int = 16, seed: int = 0, duration: float = 100.0, n_classes: int = 10,
             noise_rate: float = 0.002, gain: float = 6.0, position_jitter: float = 0.75, scale_jitter: float = 0.06,
             rotation: float = 8.0, substeps: int = 5, stream: int = 0, chunk: int = 128):
    """Generate ``n_samples`` synthetic samples (the recording model is in the module docstring).

    Parameters
    ----------
    n_samples : int
        Number of samples, >= 1.
    size : int, default 16
        Retina side in pixels, >= 8: the sensor is ``(2, size, size)``.
    seed : int, default 0
        Seed; with ``stream`` it selects the random stream ``default_rng([seed, stream])``.
    duration : float, default 100.0
        Sample length (ms), > 0; times lie in ``[0, duration * 1000)`` us.
    n_classes : int, default 10
        Number of glyphs used, 2 .. 10.
    noise_rate : float, default 0.002
        Background events per pixel, per polarity and per ms, >= 0.
    gain : float, default 6.0
        Mean events per unit of brightness change per pixel.
    position_jitter : float, default 0.75
        Largest offset of the glyph's position (pixels).
    scale_jitter : float, default 0.06
        Largest relative change of the glyph's scale.
    rotation : float, default 8.0
        Largest rotation (degrees).
    substeps : int, default 5
        Linear steps per saccade leg.
    stream : int, default 0
        0 for the train split, 1 for test.
    chunk : int, default 128
        Samples rendered at once (memory only; the result does not depend on it).

    Returns
    -------
    events : ndarray of EVENT_DTYPE, shape (n_events,)
        All events concatenated, sorted by time within each sample; ``t`` in integer us.
    offsets : ndarray, shape (n_samples + 1,), int64
        Sample ``i`` is ``events[offsets[i]:offsets[i+1]]``.
    labels : ndarray, shape (n_samples,), int64
        Balanced and shuffled, in ``0 .. n_classes-1``.

    Raises
    ------
    TypeError
        ``n_samples``, ``size`` or ``n_classes`` is not an integer.
    ValueError
        ``n_samples < 1``, ``size < 8``, ``n_classes`` outside 2 .. 10, ``duration <= 0`` or
        ``noise_rate < 0``.
    """
    n = check_int("n_samples", n_samples, 1)
    size = check_int("size", size, 8)
    n_classes = check_int("n_classes", n_classes, 2)
    if n_classes > 10:
        raise ValueError(f"n_classes must be <= 10 (ten glyphs), got {n_classes}")
    if not duration > 0:
        raise ValueError(f"duration must be > 0 ms, got {duration!r}")
    if noise_rate < 0:
        raise ValueError(f"noise_rate must be >= 0, got {noise_rate!r}")
    rng = np.random.default_rng([int(seed), int(stream)])
    labels = rng.permutation(np.arange(n) % n_classes).astype(np.int64)
    res = _SUPER * size
    tmpl = glyph_templates(res).astype(np.float32)
    glyph_px = 0.78 * size  # glyph box side in pixels
    # per-sample geometry
    off = rng.uniform(-position_jitter, position_jitter, (n, 2))
    scale = glyph_px * rng.uniform(1 - scale_jitter, 1 + scale_jitter, n)
    rot = np.deg2rad(rng.uniform(-rotation, rotation, n))
    contrast = rng.uniform(0.8, 1.2, n)
    theta0 = rng.uniform(0, 2 * np.pi, n)
    amp = rng.uniform(1.2, 2.2, (n, 3))
    ang = theta0[:, None] + np.deg2rad(np.array([0.0, 120.0, 240.0]))[None] + rng.normal(0, 0.15, (n, 3))
    legs = amp[..., None] * np.stack([np.cos(ang), np.sin(ang)], -1)  # (n, 3, 2)
    legs[:, 2] = -(legs[:, 0] + legs[:, 1])  # close the triangle
    n_steps = 3 * substeps
    frac = np.arange(1, substeps + 1) / substeps
    path = [np.zeros((n, 2))]
    corner = np.zeros((n, 2))
    for k in range(3):
        path += [corner + f * legs[:, k] for f in frac]
        corner = corner + legs[:, k]
    path = np.stack(path, 1)
    path += off[:, None] - path.mean(1, keepdims=True)  # (n, n_steps + 1, 2) image offset in pixels
    c = (np.arange(size) + 0.5 - size / 2).astype(np.float32)
    px, py = np.meshgrid(c, c)  # (H, W) pixel centres relative to the retina centre
    dt = duration * 1000.0 / n_steps
    parts = []
    for a in range(0, n, chunk):  # chunks keep the temporaries in cache
        b = min(n, a + chunk)
        pth = path[a:b].astype(np.float32)
        dx = px[None, None] - pth[:, :, 0, None, None]
        dy = py[None, None] - pth[:, :, 1, None, None]
        cr = np.cos(rot[a:b]).astype(np.float32)[:, None, None, None]
        sr = np.sin(rot[a:b]).astype(np.float32)[:, None, None, None]
        sc = (res / scale[a:b]).astype(np.float32)[:, None, None, None]
        u = (cr * dx + sr * dy) * sc + res / 2
        v = (cr * dy - sr * dx) * sc + res / 2
        frames = _sample_bilinear(tmpl[labels[a:b]], u, v)
        frames *= contrast[a:b].astype(np.float32)[:, None, None, None]
        diff = np.diff(frames, axis=1) * np.float32(gain)  # (m, n_steps, H, W)
        lam = np.stack([np.maximum(-diff, 0), np.maximum(diff, 0)], axis=2)  # (m, steps, 2 (p), H, W)
        flat = lam.ravel()
        nz = np.flatnonzero(flat > 1e-3)
        idx = np.repeat(nz, rng.poisson(flat[nz]))
        s_i, st_i, p_i, y_i, x_i = np.unravel_index(idx, lam.shape)
        parts.append((s_i + a, x_i, y_i, p_i, (st_i + rng.random(idx.size)) * dt))
    # sensor noise
    n_noise = rng.poisson(noise_rate * duration * 2 * size * size, n)
    m = int(n_noise.sum())
    parts.append((np.repeat(np.arange(n), n_noise), rng.integers(0, size, m), rng.integers(0, size, m),
                  rng.integers(0, 2, m), rng.random(m) * duration * 1000.0))
    s, x, y, p, t = (np.concatenate(f) for f in zip(*parts))
    t = np.minimum(np.floor(t), duration * 1000.0 - 1).astype(np.int64)
    order = np.argsort(s * int(np.ceil(duration * 1000.0)) + t, kind="stable")  # by sample, then time
    ev = np.empty(s.size, dtype=EVENT_DTYPE)
    ev["x"], ev["y"], ev["p"], ev["t"] = x[order], y[order], p[order], t[order]
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(s, minlength=n), out=offsets[1:])
    return ev, offsets, labels


class SyntheticDataset(EventDataset):
    """The built-in synthetic glyph dataset (see the module docstring).

    Samples are generated at construction (:func:`generate`) and binned into ``(1, 2, size, size, T)``
    spike tensors (before ``downsample``), ``T = t_sample / ts``; labels ``0 .. n_classes-1``.

    Parameters
    ----------
    split : {'train', 'test'}, default 'train'
        Train and test use different random streams of the same ``seed``.
    sim : SimParams, optional
        ``ts``, ``t_sample`` (ms); default ``SimParams(1, 100)``.
    n_samples : int, optional
        Default 2000 (train) or 500 (test).
    size : int, default 16
        Retina side in pixels, >= 8.
    seed : int, default 0
        >= 0.
    duration : float, optional
        Sample length (ms); default ``sim.t_sample``.
    n_classes : int, default 10
        2 .. 10.
    noise_rate : float, default 0.002
        Background events per pixel, per polarity and per ms.
    jitter : int, default 0
        Largest spatial shift (pixels) of the augmentation, applied only with ``augment=True``.
    downsample : int, default 1
        Spatial pooling factor ``k >= 1``.
    dtype : numpy dtype, default float32
        dtype of the spike values: float32 or float64.
    data_dir, cache_dir : optional
        Accepted for a uniform interface and ignored (nothing is read or parsed: ``n_parsed`` stays 0).

    Raises
    ------
    TypeError, ValueError
        As for :func:`generate` and :class:`~pysrm.data.base.EventDataset`; ``seed < 0``.
    """

    name = "synthetic"

    def __init__(self, split="train", sim=None, n_samples=None, size=16, seed=0, duration=None, n_classes=10,
                 noise_rate=0.002, jitter=0, downsample=1, dtype=np.float32, data_dir=None, cache_dir=None):
        check_split(split)
        sim = check_sim(sim, DEFAULT_SIM)
        n = DEFAULT_N[split] if n_samples is None else n_samples
        duration = sim.t_sample if duration is None else float(duration)
        self.size = check_int("size", size, 8)
        self.seed = check_int("seed", seed, 0)
        self.duration = duration
        ev, off, labels = generate(n, self.size, self.seed, duration, n_classes, noise_rate,
                                   stream=0 if split == "train" else 1)
        super().__init__(split=split, sim=sim, native_shape=(2, self.size, self.size),
                         class_names=CLASS_NAMES[:n_classes], labels=labels, downsample=downsample, jitter=jitter,
                         out_of_range="error", dtype=dtype)
        self._packed = (ev, off)
        self._unit_of = np.arange(n)

    def _source(self, i):
        return f"synthetic {self.split} sample {i}"

    def duration_us(self, i):
        """Duration of every sample: ``duration`` in us.

        Parameters
        ----------
        i : int
            Sample index (not used: all samples last ``duration``).

        Returns
        -------
        int
            ``round(duration * 1000)``.
        """
        return int(round(self.duration * 1000))
