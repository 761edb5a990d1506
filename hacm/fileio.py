"""File-system helpers: atomic writes (a crash never leaves half a file) and output directories
that fail with a HacmError naming the path."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

from hacm.errors import HacmError

TEMP_SUFFIX = ".tmp"
_UMASK = os.umask(0o022)   # read once (os.umask can only be read by setting it) and put back
os.umask(_UMASK)



def write_atomic(path: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True) -> Path:
    """Call `write(file)` on a temporary file in the same directory, then rename it to `path`.

    A crash or exception mid-write leaves the previous file (if any) untouched and no partial file.
    `fsync` makes the content durable before the rename (checkpoints, manifests); bulk outputs that
    can be regenerated (synthetic raw files) skip it for speed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)   # mkstemp's 0600 would hide reports and runs from the group
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


def remove_temporaries(directory: str | Path) -> int:
    """Delete the temporary files that writers killed mid-write (kill -9: no clean-up ran) left in
    `directory` (not below it); the number deleted. Only for the directory's one writer, holding
    its lock (hacm.lock): another live writer's temporary file would be pulled from under it."""
    removed = 0
    for p in Path(directory).glob(f".*{TEMP_SUFFIX}"):
        if p.is_file():
            p.unlink(missing_ok=True)
            removed += 1
    return removed


def write_text_atomic(path: str | Path, text: str, *, fsync: bool = True) -> int:
    """Replace a text file atomically; returns the number of bytes written."""
    data = text.encode()
    write_atomic(path, lambda f: f.write(data), fsync=fsync)
    return len(data)


def make_dir(path, what: str = "output directory"):
    """`path.mkdir(parents=True, exist_ok=True)`, but a path that cannot be a directory (an existing
    file, a read-only place) is a HacmError naming it rather than an OSError traceback."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise HacmError(f"{blocker}: exists and is not a directory (needed for the {what} {path})") from None
    except OSError as e:
        raise HacmError(f"{path}: cannot create the {what}: {e.strerror}") from None
    return path
