"""Slow, obviously-correct references in plain Python loops (float64).

Each mirrors the formula in the op's docstring term by term; the tests compare
the fast kernels against these on small shapes.
"""
import math

import numpy as np


def alpha(tau, mult, ts, t_sample, tol):
    out = []
    k = 0
    while k * ts < t_sample:
        t = k * ts
        v = mult * t / tau * math.exp(1 - t / tau)
        if abs(v) < tol and t > tau:
            break
        out.append(v)
        k += 1
    return np.array(out)


def psp(x, eps, ts):
    x2 = x.reshape(-1, x.shape[-1])
    out = np.zeros_like(x2, dtype=np.float64)
    R, T = x2.shape
    for r in range(R):
        for t in range(T):
            for i in range(len(eps)):
                if t - i >= 0:
                    out[r, t] += ts * eps[i] * x2[r, t - i]
    return out.reshape(x.shape)


def psp_backward(g, eps, ts):
    g2 = g.reshape(-1, g.shape[-1])
    out = np.zeros_like(g2, dtype=np.float64)
    R, T = g2.shape
    for r in range(R):
        for t in range(T):
            for i in range(len(eps)):
                if t + i < T:
                    out[r, t] += ts * eps[i] * g2[r, t + i]
    return out.reshape(g.shape)


def spike(u, nu, theta, ts):
    u2 = u.reshape(-1, u.shape[-1]).astype(np.float64).copy()
    s = np.zeros_like(u2)
    R, T = u2.shape
    for r in range(R):
        for t in range(T):
            if u2[r, t] >= theta:
                s[r, t] = 1.0 / ts
                for j in range(len(nu)):
                    if t + j < T:
                        u2[r, t + j] += nu[j]
    return s.reshape(u.shape), u2.reshape(u.shape)


def rho(u, theta, tau_rho, scale_rho):
    return scale_rho / (tau_rho * theta) * np.exp(-np.abs(u - theta) / (tau_rho * theta))


def dense(w, x):
    N, T = x.shape[0], x.shape[-1]
    xf = x.reshape(N, -1, T)
    O, I = w.shape
    out = np.zeros((N, O, T))
    for n in range(N):
        for o in range(O):
            for i in range(I):
                for t in range(T):
                    out[n, o, t] += w[o, i] * xf[n, i, t]
    return out.reshape(N, O, 1, 1, T)


def dense_weight_grad(g, x):
    N, T = x.shape[0], x.shape[-1]
    xf = x.reshape(N, -1, T)
    gf = g.reshape(N, -1, T)
    gw = np.zeros((gf.shape[1], xf.shape[1]))
    for n in range(N):
        for o in range(gf.shape[1]):
            for i in range(xf.shape[1]):
                for t in range(T):
                    gw[o, i] += gf[n, o, t] * xf[n, i, t]
    return gw


def conv(w, x, stride, pad):
    N, Ci, H, W, T = x.shape
    Co, _, KH, KW = w.shape
    Ho = (H + 2 * pad - KH) // stride + 1
    Wo = (W + 2 * pad - KW) // stride + 1
    out = np.zeros((N, Co, Ho, Wo, T))
    for n in range(N):
        for co in range(Co):
            for oy in range(Ho):
                for ox in range(Wo):
                    for ci in range(Ci):
                        for ky in range(KH):
                            for kx in range(KW):
                                iy, ix = oy * stride + ky - pad, ox * stride + kx - pad
                                if 0 <= iy < H and 0 <= ix < W:
                                    out[n, co, oy, ox, :] += w[co, ci, ky, kx] * x[n, ci, iy, ix, :]
    return out


def pool(x, k, wp):
    N, C, H, W, T = x.shape
    Ho, Wo = -(-H // k), -(-W // k)
    out = np.zeros((N, C, Ho, Wo, T))
    for n in range(N):
        for c in range(C):
            for iy in range(H):
                for ix in range(W):
                    out[n, c, iy // k, ix // k, :] += wp * x[n, c, iy, ix, :]
    return out


def delay(x, d, ts):
    """Linear-interpolation shift of each neuron; d broadcast to the neuron shape."""
    full = np.broadcast_to(d, x.shape[1:-1])
    out = np.zeros_like(x, dtype=np.float64)
    T = x.shape[-1]
    for idx in np.ndindex(*x.shape[:-1]):
        db = full[idx[1:]] / ts
        m = int(math.floor(db))
        f = db - m
        for t in range(T):
            if t - m >= 0:
                out[idx + (t,)] += (1 - f) * x[idx + (t - m,)]
            if t - m - 1 >= 0:
                out[idx + (t,)] += f * x[idx + (t - m - 1,)]
    return out


def optimizer_step(name, p, g, state, lr, k, weight_decay=0.0, lower=None, momentum=0.0, b1=0.9, b2=0.999,
                   eps=1e-8, mu=None, mu_next=None, mu_product=None):
    """One optimiser step as plain NumPy array expressions (the formulas of pysrm.optim), in place on
    ``p`` and the moment arrays in ``state``; the fused kernels of pysrm/ops/optim.py must match."""
    if weight_decay:
        g = g + weight_decay * p
    if name == "sgd":
        if momentum:
            state[0] *= momentum
            state[0] += g
            g = state[0]
        p -= (lr * g).astype(p.dtype, copy=False)
    else:
        m, v = state
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        vhat = v / (1 - b2 ** k)
        if name == "adam":
            upd = m / (1 - b1 ** k)
        else:
            prod = float(mu_product)
            upd = mu_next * m / (1 - prod * mu_next) + (1 - mu) * g / (1 - prod)
        p -= (lr * upd / (np.sqrt(vhat) + eps)).astype(p.dtype, copy=False)
    if lower is not None:
        np.maximum(p, lower, out=p)
