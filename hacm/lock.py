"""One writer per output directory: an OS file lock on `DIR/.hacm.lock`.

Every directory hacm writes (a run directory, a store, a report and each report job's directory) is
locked before anything is written into it. The lock is `fcntl.flock` on a file inside the
directory, so the operating system releases it when the holding process ends in any way (kill -9
included); the file records who holds it (pid, host, command, since when) so that a second writer
is refused with one line naming the holder, touching nothing.

- A lock file that still names a holder but can be locked is stale (its holder died without
  releasing it): it is taken over, with a warning naming the former holder.
- A clean release deletes the lock file while still holding the lock. Whoever opened the file
  before the deletion notices (the path no longer refers to the file it locked) and opens it anew,
  so two writers can never each hold a different copy.
- Within one process a directory already held is held again (a count), never refused by itself.
- Readers (the explorer, `compare`, `features`, `--collect`) take no lock: hacm writes every file
  by an atomic rename (hacm.fileio), and metrics.jsonl line by line, so a reader sees whole files.
"""
from __future__ import annotations

import errno
import fcntl
import functools
import inspect
import json
import logging
import os
import shlex
import socket
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from hacm.errors import HacmError
from hacm.fileio import make_dir, remove_temporaries

LOCK_FILE = ".hacm.lock"
_POLL_S = 0.2
logger = logging.getLogger("hacm.lock")

_held: dict[Path, list] = {}   # directory -> [file descriptor, hold count, created by this hold], this process


class DirectoryLocked(HacmError):
    """Another process writes into the directory."""

    def __init__(self, directory: Path, holder: dict | None):
        self.directory, self.holder = directory, holder
        super().__init__(f"{directory}: another hacm process is writing here ({describe(holder)}); "
                         f"wait for it to end or choose another directory")


def describe(holder: dict | None) -> str:
    """'pid 123 on host, `hacm pretrain ...`, since 2026-...' (or why it is not known)."""
    if not holder:
        return "holder not recorded yet: it is just starting"
    return f"pid {holder.get('pid')} on {holder.get('host')}, `{holder.get('command')}`, since {holder.get('since')}"


def _command_line() -> str:
    """This process's command line as `ps` shows it (sys.argv loses `python -c` / `-m` details)."""
    try:
        argv = Path("/proc/self/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        argv = [sys.executable, *sys.argv]
    return shlex.join([Path(argv[0]).name, *argv[1:]])


def _record() -> dict:
    command = _command_line()
    return {"pid": os.getpid(), "host": socket.gethostname(), "command": command[:300],
            "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def read_holder(directory: str | Path) -> dict | None:
    """What the lock file of `directory` records (None: no file, empty or unreadable)."""
    try:
        text = (Path(directory) / LOCK_FILE).read_text()
        holder = json.loads(text) if text.strip() else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


def _try_lock(path: Path) -> int | None:
    """An open, exclusively locked descriptor of `path` (None when another process holds it)."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return None
            raise HacmError(f"{path}: cannot lock: {e.strerror}") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)   # the holder released (deleted) the file after we opened it: open the new one


def acquire(directory: str | Path, what: str = "output directory", *, wait_s: float = 0.0) -> Path:
    """Create `directory` if needed and lock it for this process. Another live holder: wait up to
    `wait_s` seconds, then DirectoryLocked. Returns the directory."""
    created = not Path(directory).exists()
    directory = make_dir(directory, what).resolve()
    if directory in _held:
        _held[directory][1] += 1
        return directory
    path = directory / LOCK_FILE
    deadline = time.monotonic() + wait_s
    while (fd := _try_lock(path)) is None:
        if time.monotonic() >= deadline:
            raise DirectoryLocked(directory, read_holder(directory))
        time.sleep(_POLL_S)
    stale = read_holder(directory)
    if stale is not None:
        logger.warning("%s: taking over the lock of a writer that is gone (%s)", directory, describe(stale))
        remove_temporaries(directory)   # what it was writing when it died
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(_record()) + "\n").encode(), 0)
    _held[directory] = [fd, 1, created]
    return directory


def release(directory: str | Path) -> None:
    """Give up one hold of `directory`; the last one deletes the lock file and unlocks (and removes
    the directory again when this hold created it and nothing was written: a run that failed its
    checks leaves no trace)."""
    directory = Path(directory).resolve()
    entry = _held[directory]
    entry[1] -= 1
    if entry[1]:
        return
    fd, _, created = _held.pop(directory)
    try:
        (directory / LOCK_FILE).unlink(missing_ok=True)   # still locked: nobody can take the old file
        if created and not any(directory.iterdir()):
            directory.rmdir()
    except OSError:
        pass   # the directory was removed meanwhile or is not empty: nothing to tidy
    finally:
        os.close(fd)                                       # closing the descriptor releases the lock


@contextmanager
def hold(directory: str | Path, what: str = "output directory", *, wait_s: float = 0.0) -> Iterator[Path]:
    """`with hold(dir):` -- the directory is this process's to write while the block runs."""
    locked = acquire(directory, what, wait_s=wait_s)
    try:
        yield locked
    finally:
        release(locked)


def writer_of(argument: str, what: str):
    """Decorator: the function writes into the directory passed as `argument` and holds its lock
    while it runs (the directory is created first when needed)."""
    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def locked(*args, **kwargs):
            with hold(signature.bind(*args, **kwargs).arguments[argument], what):
                return fn(*args, **kwargs)
        return locked
    return decorate


def is_held(directory: str | Path) -> bool:
    """Whether this process holds `directory`."""
    return Path(directory).resolve() in _held
