"""The one exception family hacm raises for bad input, so callers and the CLI can catch it."""
from __future__ import annotations

from pathlib import Path


class HacmError(Exception):
    """A problem with user input (a file, a config, a store) that hacm explains in its message."""


class FormatError(HacmError):
    """Malformed input file: the message names the file, the line and what was expected."""

    def __init__(self, path, line: int | None, message: str):
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(HacmError):
    """A config key, value or type that hacm cannot honour."""


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
