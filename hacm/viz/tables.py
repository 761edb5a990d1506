"""Result tables (one row per run, e.g. an ablation) that render in notebooks (HTML) and in text (markdown)."""
from __future__ import annotations

import csv
import html
import io
import math
import uuid
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

    def to_latex(self, label: str = "") -> str:
        """A booktabs table (\\usepackage{booktabs}): \\toprule / \\midrule / \\bottomrule, text columns
        left-aligned and number columns right-aligned, the caption above, special characters escaped."""
        numeric = [all(isinstance(r.get(c), (int, float)) and not isinstance(r.get(c), bool)
                       for r in self.rows if r.get(c) is not None) and any(r.get(c) is not None for r in self.rows)
                   for c in self.columns]
        spec = "".join("r" if n else "l" for n in numeric)
        lines = ["\\begin{table}[t]", "\\centering"]
        if self.caption:
            lines.append(f"\\caption{{{latex_escape(self.caption)}}}")
        if label:
            lines.append(f"\\label{{{label}}}")
        lines += [f"\\begin{{tabular}}{{{spec}}}", "\\toprule",
                  " & ".join(latex_escape(c) for c in self.columns) + " \\\\", "\\midrule"]
        lines += [" & ".join(latex_escape(self._cell(r.get(c))) for c in self.columns) + " \\\\" for r in self.rows]
        lines += ["\\bottomrule", "\\end{tabular}", "\\end{table}"]
        return "\n".join(lines) + "\n"

    def to_csv(self) -> str:
        """The rows as CSV with a header line; numbers unformatted (full precision), empty cells empty."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        for r in self.rows:
            writer.writerow(["" if r.get(c) is None else r.get(c) for c in self.columns])
        return buffer.getvalue()

    def _repr_html_(self) -> str:
        return self.to_html()


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "±": r"$\pm$", "≥": r"$\geq$", "≤": r"$\leq$", "→": r"$\to$"}


def latex_escape(text: str) -> str:
    """Text as LaTeX typesets it literally (& % $ # _ { } ~ ^ \\ escaped; ± ≥ ≤ → as math)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


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


_SORT_SCRIPT = """<script>(function () {
  // Click a header to sort by its column (again: the other way); numbers by value, empty cells last.
  const table = document.getElementById("%s");
  if (!table) return;
  const key = (row, i) => {
    const cell = row.cells[i];
    if (cell.dataset.sort === undefined) return cell.textContent;
    return cell.dataset.sort === "" ? null : parseFloat(cell.dataset.sort);
  };
  table.querySelectorAll("th").forEach((th, i) => th.addEventListener("click", () => {
    const up = th.dataset.order !== "up";
    table.querySelectorAll("th").forEach((h) => { delete h.dataset.order; });
    th.dataset.order = up ? "up" : "down";
    const body = table.tBodies[0];
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a, i), y = key(b, i);
      if (x === null || y === null) return (x === null) - (y === null);
      const c = typeof x === "number" ? x - y : String(x).localeCompare(String(y), undefined, {numeric: true});
      return up ? c : -c;
    });
    rows.forEach((r) => body.appendChild(r));
  }));
})();</script>"""


@dataclass
class SortableTable(Table):
    """A Table whose HTML sorts by any column when its header is clicked (a small inline script, so it
    also works in an exported HTML page). Numeric cells sort by value, not by their formatted text."""

    def to_html(self) -> str:
        table_id = f"hacm-sortable-{uuid.uuid4().hex[:12]}"   # unique on a page that shows several
        head = "".join(f'<th title="click to sort" style="cursor: pointer">{html.escape(c)} &#x21C5;</th>'
                       for c in self.columns)
        body = "".join("<tr>" + "".join(self._sortable_cell(r.get(c)) for c in self.columns) + "</tr>"
                       for r in self.rows)
        caption = f"<caption>{html.escape(self.caption)}</caption>" if self.caption else ""
        return (f'<table id="{table_id}">{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
                + _SORT_SCRIPT % table_id)

    def _sortable_cell(self, v) -> str:
        text = html.escape(self._cell(v))
        if v is None or (isinstance(v, float) and math.isnan(v)):   # sorts last
            return f'<td data-sort="">{text}</td>'
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f'<td data-sort="{float(v)!r}">{text}</td>'
        return f"<td>{text}</td>"
