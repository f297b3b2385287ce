"""A file written whole or not at all: what a crash or a power loss may not tear.

Nothing here imports the rest of sqltune: the run folder (rundir.py) and checkpoint manifests
(manifest.py) both write through it.
"""

from __future__ import annotations

import os
from pathlib import Path


def write_atomic(path: Path, text: str | bytes) -> None:
    """`path` holds `text` whole, or keeps what it held: a temporary file in the same folder,
    flushed and fsynced, renamed over `path`, and the folder fsynced so the rename itself lasts."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb" if isinstance(text, bytes) else "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
