"""Result tables (one row per run, e.g. an ablation) that render in notebooks (HTML) and in text (markdown)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Mapping, Sequence

from hacm.errors import HacmError


DEFAULT_FLOAT = "{:.2f}"


def _cell(v, float_format: str = DEFAULT_FLOAT) -> str:
    return float_format.format(v) if isinstance(v, float) else "" if v is None else str(v)


@dataclass
class Table:
    """A small table that renders in notebooks (HTML) and in text (markdown), with a caption."""
    columns: list[str]
    rows: list[dict]
    float_format: str = DEFAULT_FLOAT
    caption: str = ""

    def _cell(self, v) -> str:
        return _cell(v, self.float_format)

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._cell(r.get(c)))}</td>" for c in self.columns)
                       + "</tr>" for r in self.rows)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self._cell(r.get(c)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines + ([f"\n{self.caption}"] if self.caption else []))

    def _repr_html_(self) -> str:
        return self.to_html()


def ablation_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, *,
                   sort_by: str | None = None, descending: bool = True, caption: str = "",
                   fold_constant: bool = False) -> Table:
    """Rows (one per run) as a Table; columns default to every key in first-seen order.
    fold_constant=True moves a column that holds the same value in every one of several rows into
    the caption ("Same in every row: seeds 3."), where it is read once (an ablation's seeds and
    test clips)."""
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    constant = [c for c in columns if fold_constant and len(rows) > 1 and c != sort_by
                and all(c in r for r in rows) and len({repr(r[c]) for r in rows}) == 1]
    if constant:
        shared = ", ".join(f"{c} {_cell(rows[0][c])}" for c in constant)
        caption = " ".join(filter(None, [caption, f"Same in every row: {shared}."]))
        columns = [c for c in columns if c not in constant]
    if sort_by is not None:
        if sort_by not in columns:
            raise HacmError(f"ablation_table: sort_by {sort_by!r} is not a column ({columns})")
        rows.sort(key=lambda r: (r.get(sort_by) is None, r.get(sort_by)), reverse=descending)
        if descending:   # keep rows without a value last
            rows.sort(key=lambda r: r.get(sort_by) is None)
    return Table(list(columns), rows, caption=caption)
