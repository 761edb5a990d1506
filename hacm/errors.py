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


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' naming the closest of `choices` to a mistyped `word`, or '' if none is close."""
    import difflib

    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""
