"""Progress for long work, legible wherever it is shown. Every bar in hacm comes from `progress_bar()`.

- A terminal gets tqdm's redrawn bar; a Jupyter notebook its widget.
- Anything else (CI, nohup, `| tee`, Slurm logs, a papermill kernel's captured streams) gets
  `LineBar`: whole lines, one every EVERY_S seconds while the work lasts and one at the end,
  instead of carriage-return redraws that pile up into one line thousands of characters long.
- HACM_PROGRESS=bar|lines|off overrides the choice (the report executors set `lines` for the
  notebooks they run).

A running job of a report batch also publishes one status line (`publish`) to the file named by
HACM_STATUS_FILE, which the batch runner shows on that job's line: a study says there which of its
(variant, seed) pipelines run, in which phase and epoch.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from tqdm.std import tqdm as terminal_tqdm

from hacm.fileio import write_text_atomic

EVERY_S = 15.0                      # seconds between two lines of a LineBar
STYLE_ENV = "HACM_PROGRESS"
STATUS_ENV = "HACM_STATUS_FILE"
STYLES = ("bar", "lines", "off")


class LineBar(terminal_tqdm):
    """tqdm that writes plain lines: at most one every EVERY_S seconds, and the final state when it
    closes (bars with leave=False, the inner ones, say nothing at the end). Identical lines are
    written once."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("ascii", True)
        kwargs["dynamic_ncols"] = False
        kwargs["mininterval"] = 0               # every update reaches display(), which keeps the pace
        self._line_at = time.monotonic()        # the first line comes EVERY_S after the start
        self._last_line = ""
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        if msg == "":                           # tqdm clears a bar that is not kept: nothing to clear in a log
            return False
        if time.monotonic() - self._line_at >= EVERY_S:
            self._emit(self.__str__() if msg is None else msg)
        return True

    def _emit(self, line: str) -> None:
        line = line.strip()
        if line and line != self._last_line:
            self.fp.write(line + "\n")
            self.fp.flush()
            self._last_line = line
        self._line_at = time.monotonic()

    def close(self):
        if getattr(self, "disable", True):
            return
        if self.leave or (self.leave is None and self.pos == 0):
            self._ema_dt = lambda: None         # the overall rate, as tqdm shows it at the end
            with self._lock:
                self._emit(self.__str__())
        self.leave = False                      # the rest of tqdm's close writes nothing
        super().close()


def _in_notebook() -> bool:
    """Whether this code runs in a Jupyter kernel (tqdm.autonotebook's test)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython() if "IPython" in sys.modules else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def style(file=None) -> str:
    """"bar", "widget", "lines" or "off" for a bar written to `file` (default stderr)."""
    chosen = os.environ.get(STYLE_ENV, "").strip().lower()
    if chosen in STYLES:
        return chosen
    if _in_notebook():
        return "widget"
    stream = file if file is not None else sys.stderr
    try:
        return "bar" if stream.isatty() else "lines"
    except (AttributeError, ValueError):        # no stream, or a closed one
        return "lines"


def progress_bar(iterable=None, **kwargs):
    """A tqdm progress bar (same arguments) in the style that suits where it is shown."""
    chosen = style(kwargs.get("file"))
    if chosen == "off":
        kwargs["disable"] = True
    if chosen == "widget":
        from tqdm.auto import tqdm as widget_tqdm

        return widget_tqdm(iterable, **kwargs)
    return (LineBar if chosen == "lines" else terminal_tqdm)(iterable, **kwargs)


def publish(text: str) -> None:
    """This job's one status line, for the batch runner (a no-op outside a report job)."""
    path = os.environ.get(STATUS_ENV)
    if path:
        write_text_atomic(path, text.strip() + "\n", fsync=False)


def read_status(path: str | Path) -> str:
    """A job's published status line ("" when it published none)."""
    try:
        return Path(path).read_text(errors="replace").strip()
    except OSError:
        return ""
