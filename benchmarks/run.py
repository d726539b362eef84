#!/usr/bin/env python3
"""Runs the benchmark suite from a checkout: ``python benchmarks/run.py [options]``.

The suite itself is the package ``aioc.bench`` (``python -m aioc.bench --help``);
this wrapper only puts ``src/`` on the path when aioc is not installed.
"""

import os
import sys

try:
    import aioc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))

from aioc.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
