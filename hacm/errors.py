"""The one exception family hacm raises for bad input, so callers and the CLI can catch it."""
from __future__ import annotations


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
