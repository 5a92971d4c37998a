"""The benchmark's own modules (``bench/`` and ``bench/apps``) import as top-level modules."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = str(Path(__file__).resolve().parent.parent)
if BENCH not in sys.path:
    sys.path.insert(0, BENCH)
