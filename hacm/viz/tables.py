"""Result tables (one row per run, e.g. an ablation) that render in notebooks (HTML) and in text (markdown)."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Mapping, Sequence

from hacm.errors import HacmError


@dataclass
class Table:
    """A small table that renders in notebooks (HTML) and in text (markdown)."""
    columns: list[str]
    rows: list[dict]
    float_format: str = "{:.2f}"

    def _cell(self, v) -> str:
        return self.float_format.format(v) if isinstance(v, float) else "" if v is None else str(v)

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(self._cell(r.get(c)))}</td>" for c in self.columns)
                       + "</tr>" for r in self.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(self._cell(r.get(c)) for c in self.columns) + " |" for r in self.rows]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        return self.to_html()


def ablation_table(rows: Sequence[Mapping], columns: Sequence[str] | None = None, *,
                   sort_by: str | None = None, descending: bool = True) -> Table:
    """Rows (one per run) as a Table; columns default to every key in first-seen order."""
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if sort_by is not None:
        if sort_by not in columns:
            raise HacmError(f"ablation_table: sort_by {sort_by!r} is not a column ({columns})")
        rows.sort(key=lambda r: (r.get(sort_by) is None, r.get(sort_by)), reverse=descending)
        if descending:   # keep rows without a value last
            rows.sort(key=lambda r: r.get(sort_by) is None)
    return Table(list(columns), rows)
