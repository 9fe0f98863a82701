"""``python -m benchmarks.run [--quick] [--out PREFIX]``: the pysrm speed benchmarks (see pysrm/bench.py)."""
import sys

import pysrm  # noqa: F401  (first: single-threaded BLAS next to the Numba kernels)
from pysrm.bench import main

if __name__ == "__main__":
    sys.exit(main())
