"""Make the repository root importable (``services.identity``) when pytest runs without a
project configuration; harmless once pyproject.toml sets ``pythonpath`` or the package is
installed."""

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
