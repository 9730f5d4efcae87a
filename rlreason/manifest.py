"""What a written folder holds, checked later; and writes that survive a crash of the machine.

`MANIFEST.json` lists every other file of a folder (path relative to it, size, sha256) and the step it
was written at. It is written last, after every file it lists, so a folder whose files match their
manifest is the folder as it was written: a file cut short, emptied, deleted or with a flipped byte is
named by `check`. Hashing reads each file once when it is written and once when it is checked.

`fsync_tree` / `fsync_path`: `os.replace` alone makes a rename atomic for running processes, not for a
power cut; the files' data and the folder entries must reach the disk before the rename, and the rename
itself after it (the parent folder's fsync).
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Dict, Optional

NAME = "MANIFEST.json"
CHUNK = 1 << 20


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _files(folder: Path) -> Dict[str, Path]:
    """Every file under `folder` but the manifest, by its relative POSIX path, sorted."""
    found = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
    found.pop(NAME, None)
    return dict(sorted(found.items()))


def write(folder: Path, step: int) -> Path:
    """Write `folder/MANIFEST.json` for the files now in `folder`; call it after the last of them is written."""
    folder = Path(folder)
    files = {rel: {"size": p.stat().st_size, "sha256": sha256(p)} for rel, p in _files(folder).items()}
    out = folder / NAME
    out.write_text(json.dumps({"step": step, "files": files}, indent=1) + "\n")
    return out


def check(folder: Path, step: Optional[int] = None) -> Optional[str]:
    """None when every file `folder/MANIFEST.json` lists is there with its size and sha256 (and the manifest
    is for `step`, if given); else one line naming the first file at fault. Files it does not list are
    ignored. Sizes are compared first, so a cut-off file is named without hashing the rest."""
    folder = Path(folder)
    try:
        data = json.loads((folder / NAME).read_text())
        files = {str(rel): (int(v["size"]), str(v["sha256"])) for rel, v in data["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        return f"{NAME} unreadable ({type(err).__name__})"
    if step is not None and data.get("step") != step:
        return f"{NAME} is for step {data.get('step')}, not {step}"
    for rel, (size, _) in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{rel} missing"
        if path.stat().st_size != size:
            return f"{rel} size mismatch ({path.stat().st_size} bytes, {NAME} says {size})"
    for rel, (_, digest) in files.items():
        if sha256(folder / rel) != digest:
            return f"{rel} checksum mismatch"
    return None


def fsync_path(path: Path) -> None:
    """Flush a folder's entries (files created, renamed or deleted in it), or one file's data, to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush a file, or every file under a folder and then every folder bottom-up, to disk."""
    path = Path(path)
    if not path.is_dir():
        fsync_path(path)
        return
    for here, _, files in os.walk(path, topdown=False):
        for name in files:
            fsync_path(Path(here) / name)
        fsync_path(Path(here))
