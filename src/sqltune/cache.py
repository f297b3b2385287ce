"""Where sqltune keeps what it builds once and reuses: converted models, built splits, fuzzed
databases, the index of checkpoint storages. Not a setting of any experiment: one per user."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$SQLTUNE_CACHE, else ~/.cache/sqltune. Read at call time, so a test or CI run can point it
    at an empty folder."""
    return Path(os.environ.get("SQLTUNE_CACHE") or "~/.cache/sqltune").expanduser()
