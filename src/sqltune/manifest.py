"""A checkpoint's manifest: every file of an HF `checkpoint-N/` with its size and checksum.

The manifest is written into `checkpoint-N/` once every other file there is final (the Trainer's
save, our config copy), and travels with them through the Core API's upload. A stored checkpoint
is complete when its manifest is there, readable, and every file it lists is there with that size
and checksum; a copy cut short lacks a file, has a short one, or lacks the manifest itself, in
whatever order the storage copied them. Resume, `evaluate`, `predict`, `merge` and GRPO's
`init_from` check this before they load a checkpoint.

The checksum is XXH3-128 (the `xxhash` package, which `datasets` already depends on): not
cryptographic, and not meant to be (it catches torn and damaged files, not an attacker); it hashes
at ~24 GiB/s from memory on one core here, against ~1.3 for SHA-256, so the cost is reading the
files once: right after the Trainer wrote them they are mostly still in the page cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import xxhash

from sqltune.atomic import write_atomic

MANIFEST = "sqltune_manifest.json"
VERSION = 1
CHUNK = 8 << 20  # bytes hashed per read: large enough to run at memory speed, small in RSS


def checksum(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def entries(folder: Path) -> dict[str, dict[str, Any]]:
    """Every regular file below `folder` (but the manifest) by its relative path: size and checksum."""
    found = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST):
        found[path.relative_to(folder).as_posix()] = {"size": path.stat().st_size, "xxh3_128": checksum(path)}
    return found


def write(folder: Path, files: dict[str, dict[str, Any]]) -> None:
    """The manifest of `files` (from `entries`, merged across nodes) into `folder`, atomically."""
    write_atomic(folder / MANIFEST, json.dumps({"version": VERSION, "files": files}, indent=1, sort_keys=True))


def problem(folder: Path) -> str | None:
    """What makes the checkpoint in `folder` incomplete, naming the file; None when it is complete."""
    path = folder / MANIFEST
    if not path.is_file():
        return (f"{path} is missing (the checkpoint was not completely stored; one written before sqltune kept "
                f"manifests can be sealed, if you know it is whole, with: python -m sqltune.manifest {folder})")
    try:
        files = json.loads(path.read_text())["files"]
        listed = {str(name): (int(f["size"]), str(f["xxh3_128"])) for name, f in files.items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"{path} is unreadable ({type(e).__name__})"
    for name, (size, _) in sorted(listed.items()):  # sizes first: a cut copy shows without reading
        file = folder / name
        try:
            actual = os.stat(file).st_size
        except OSError:
            return f"{file} is missing"
        if actual != size:
            return f"{file} has {actual:,} bytes, its manifest says {size:,}"
    for name, (_, digest) in sorted(listed.items()):
        if checksum(folder / name) != digest:
            return f"{folder / name} does not match its checksum (damaged)"
    return None


def seal(folder: Path) -> None:
    """Write the manifest of a checkpoint folder as it is now (for checkpoints from before manifests)."""
    write(folder, entries(folder))


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:] or ["--help"]:
        if arg.startswith("-") or not Path(arg, "trainer_state.json").is_file() and not Path(arg).is_dir():
            sys.exit("usage: python -m sqltune.manifest CHECKPOINT_DIR...  (a checkpoint-N folder you know is whole)")
        seal(Path(arg))
        print(f"sealed {arg}: {len(entries(Path(arg)))} files")
