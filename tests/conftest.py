"""Test configuration: ``tests/`` on the path for ``reference.py`` (slow plain-loop references)."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # tests/reference.py
