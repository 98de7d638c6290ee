"""Where the repository, its samples, the shared evaluation data and the `neardex` command are."""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples" / "neardex-docs"
DATA = ROOT.parent / "shared" / "data"
MSMARCO = DATA / "msmarco-dl19-5k"
NEARDEX = Path(sys.executable).parent / "neardex"
