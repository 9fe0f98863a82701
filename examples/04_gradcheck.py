r"""04 - Are the hand-written gradients right?  Check them against finite differences.

pysrm has no autograd: every op has a forward f and a hand-written backward that maps
g = dL/dy to dL/dx.  For a linear op y = f(x) (psp, dense, conv, pool, delay, dropout)
the backward is the adjoint (transpose) of f.  To test it, take a random "probe" R of the
shape of y and the scalar  L(x) = sum(f(x) * R);  then dL/dy = R, so backward(R) must equal
the gradient of L, which central differences measure one coordinate at a time:

    dL/dx_j  ~  (L(x + h e_j) - L(x - h e_j)) / (2h)          (error O(h^2); float64, h = 1e-6)

Part 1 does this by hand for F.dense (the weighted sum a[n,o,t] = sum_i w[o,i] x[n,i,t]).
Part 2 runs pysrm.gradcheck.run_all(): every op w.r.t. inputs and parameters, on the
event-driven and dense paths, and every loss w.r.t. the output spikes (the same table as
`pysrm gradcheck`).  The spike function itself is not differentiable (its surrogate is
tested against its formula elsewhere), so it is not in the table.

Run:   python examples/04_gradcheck.py
"""
import pysrm  # noqa: F401  (first: thread defaults)

import sys

import numpy as np

import pysrm.functional as F
from pysrm.gradcheck import format_table, run_all


def by_hand():
    """A finite-difference check of F.dense's backward, in ten lines."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 1, 1, 5))                      # (N, C, H, W, T), float64
    w = rng.normal(size=(4, 3))                               # (out, in)
    R = rng.normal(size=(2, 4, 1, 1, 5))                      # probe: L(w) = sum(dense(w, x) * R)
    L = lambda: float(np.sum(F.dense(w, x) * R))              # noqa: E731
    _, gw = F.dense_backward(w, x, R)                         # analytic dL/dw (backward of grad = R)
    h, num = 1e-6, np.zeros_like(w)
    for j in np.ndindex(w.shape):                             # central difference, one weight at a time
        old = w[j]
        w[j] = old + h; lp = L()                              # noqa: E702
        w[j] = old - h; lm = L()                              # noqa: E702
        w[j] = old
        num[j] = (lp - lm) / (2 * h)
    err = np.abs(gw - num).max() / np.abs(num).max()
    print("Part 1: dense, dL/dw by hand")
    print(f"  analytic  {gw[0]}\n  numeric   {num[0]}\n  max relative error {err:.2e}")
    return err


def main():
    np.set_printoptions(precision=6, suppress=True)
    err = by_hand()
    assert err < 1e-6, err
    print("\nPart 2: pysrm.gradcheck.run_all()")
    results = run_all(seed=0)
    print(format_table(results))
    failed = [r for r in results if not r.passed]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
