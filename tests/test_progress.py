"""Progress (hacm.progress): plain lines at a steady pace where the output is not a terminal, bars
on a terminal, and every bar in hacm made by the one helper."""
from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from hacm import progress


@pytest.fixture
def every(monkeypatch):
    """A LineBar whose clock is ours: `tick(s)` moves it on by s seconds."""
    now = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: now[0])
    monkeypatch.delenv(progress.STYLE_ENV, raising=False)

    def tick(seconds: float) -> None:
        now[0] += seconds
    return tick


def test_lines_come_every_interval_and_at_the_end_without_carriage_returns(every):
    out = io.StringIO()
    bar = progress.progress_bar(total=100, desc="convert", unit="file", file=out)
    assert isinstance(bar, progress.LineBar)
    for i in range(100):
        every(1.0)                                   # one item a second: a line every EVERY_S items
        bar.update(1)
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text and "\x1b" not in text
    assert len(lines) == 100 // int(progress.EVERY_S) + 1          # 6 steady lines and the final one
    assert lines[0].startswith("convert:  15%") and lines[-1].startswith("convert: 100%")
    assert all(len(line) < 200 for line in lines)


def test_a_short_bar_says_only_its_end_and_an_inner_bar_nothing(every):
    out = io.StringIO()
    with progress.progress_bar(total=3, desc="outer", file=out) as bar:
        inner = progress.progress_bar(total=2, desc="epoch 0", file=out, leave=False)
        inner.update(2)
        inner.close()
        bar.update(3)
    assert out.getvalue().splitlines() == [out.getvalue().strip()]
    assert out.getvalue().startswith("outer: 100%")
    silent = io.StringIO()
    with progress.progress_bar(total=3, file=silent, disable=True) as bar:
        bar.update(3)
    assert silent.getvalue() == ""


def test_style_follows_the_stream_and_the_environment(monkeypatch):
    monkeypatch.delenv(progress.STYLE_ENV, raising=False)
    assert progress.style(io.StringIO()) == "lines"
    main, tty = os.openpty()
    try:
        with open(tty, "w") as terminal:
            assert progress.style(terminal) == "bar"
            assert type(progress.progress_bar(total=1, file=terminal, disable=True)) is progress.terminal_tqdm
            monkeypatch.setenv(progress.STYLE_ENV, "lines")
            assert progress.style(terminal) == "lines"
            monkeypatch.setenv(progress.STYLE_ENV, "off")
            assert progress.progress_bar(total=1, file=terminal).disable
    finally:
        os.close(main)


def test_publish_writes_the_status_file_only_inside_a_job(tmp_path, monkeypatch):
    monkeypatch.delenv(progress.STATUS_ENV, raising=False)
    progress.publish("nothing to say")                           # no file named: nothing written
    assert progress.read_status(tmp_path / "status") == ""
    monkeypatch.setenv(progress.STATUS_ENV, str(tmp_path / "status"))
    progress.publish("study 1/4 pipelines: base seed 0: pretrain epoch 2/5")
    assert progress.read_status(tmp_path / "status") == "study 1/4 pipelines: base seed 0: pretrain epoch 2/5"


def test_every_bar_in_hacm_comes_from_the_helper():
    package = Path(progress.__file__).parent
    direct = [f"{p.relative_to(package)}:{i}" for p in sorted(package.rglob("*.py")) if p.name != "progress.py"
              for i, line in enumerate(p.read_text().splitlines(), 1)
              if re.search(r"^\s*(from tqdm|import tqdm)", line)]
    assert direct == []
