"""Paths and small builders shared by the tests (importable as `support`: pytest puts tests/ on
sys.path because tests/conftest.py lives there and tests/ has no __init__.py)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("TALKCLIP_FIXTURES", ROOT.parent / "shared" / "fixtures")).resolve()
FACES = FIXTURES / "faces"
SPEECH = FIXTURES / "speech"
