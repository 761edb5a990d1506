"""Atomic file writes: the one place hacm replaces a file, so a crash never leaves half a file."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable


def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Call `write(file)` on a temporary file in the same directory, then rename it to `path`.

    A crash or exception mid-write leaves the previous file (if any) untouched and no partial file.
    `fsync` makes the content durable before the rename (checkpoints, manifests); bulk outputs that
    can be regenerated (synthetic raw files) skip it for speed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = True) -> int:
    """Replace a text file atomically; returns the number of bytes written."""
    data = text.encode()
    write_atomic(path, lambda f: f.write(data), fsync=fsync)
    return len(data)
