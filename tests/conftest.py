"""Test configuration: import pysrm before NumPy so its single-threaded-BLAS default applies."""
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py

import pysrm  # noqa: E402,F401
