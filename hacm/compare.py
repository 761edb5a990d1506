"""Comparing run directories, as a TensorBoard / W&B run view does: readable run names, the config
keys that differ between runs, and one row of hyper-parameters and final numbers per run.

    runs = load_runs(["reports/demo/methods/runs/*/seed*/pretrain"])   # paths and / or glob patterns
    names = run_names([r.path for r in runs])        # {"ha-cm/seed0/pretrain", ...}
    diff = config_diff(runs, names)                 # {"masking.strategy": {name: value}, ...}
    rows = comparison_rows(runs, names)             # run x differing keys x summary numbers

    curves = epoch_curves(runs, names, ["loss", "test_acc"])   # {protocol: {name: epoch records}}

Figures and tables of these are hacm.viz.curves.run_curves_figure and hacm.viz.tables.SortableTable.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Sequence

from hacm import paths
from hacm.config import to_dict
from hacm.errors import HacmError
from hacm.rundir import CONFIG_FILE, Run, flatten, load_run

# Summary numbers that count or time a run rather than measure its result.
BOOKKEEPING = frozenset({"epoch", "step", "epochs", "best_epoch", "lr", "seconds", "clips_per_s",
                         "train_clips", "test_clips"})


def find_runs(patterns: str | Path | Sequence[str | Path]) -> list[Path]:
    """The run directories named by paths and / or glob patterns, in order, each once; relative ones
    are read from the repository root (hacm.paths.resolve). A pattern keeps the run directories among
    its matches (and must match one); a plain path must be one. The errors name the absolute path
    tried and the runs that do exist."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    found: dict[Path, None] = {}
    advice = "set `runs` to run directories or glob patterns"
    for pattern in (str(paths.resolve(p)) for p in patterns):
        if not glob.has_magic(pattern):
            if not (Path(pattern) / CONFIG_FILE).is_file():
                raise paths.not_found("runs", Path(pattern), f"is not a hacm run directory (no {CONFIG_FILE})",
                                      advice, what="runs", mark=CONFIG_FILE)
            found.setdefault(Path(pattern).resolve())
            continue
        matches = [m for m in sorted(glob.glob(pattern)) if (Path(m) / CONFIG_FILE).is_file()]
        if not matches:
            raise paths.not_found("runs", Path(pattern), f"(a pattern) matches no run directory (a folder with {CONFIG_FILE})",
                                  advice, what="runs", mark=CONFIG_FILE)
        for m in matches:
            found.setdefault(Path(m).resolve())
    if not found:
        raise HacmError("runs: give at least one run directory or glob pattern")
    return list(found)


def load_runs(patterns: str | Path | Sequence[str | Path]) -> list[Run]:
    """`load_run` of every directory `find_runs` finds."""
    return [load_run(p) for p in find_runs(patterns)]


def common_root(paths: Sequence[str | Path]) -> Path:
    """The deepest folder holding every path (for one run: its parent)."""
    paths = [Path(p).resolve() for p in paths]
    if len(paths) == 1:
        return paths[0].parent
    return Path(os.path.commonpath(paths))


def run_names(paths: Sequence[str | Path]) -> dict[Path, str]:
    """A readable, unique name per run directory: its path below the runs' common root
    ("ha-cm/seed0/pretrain"), keyed by the resolved path."""
    resolved = [Path(p).resolve() for p in paths]
    if len(set(resolved)) != len(resolved):
        raise HacmError("run_names: a run directory is given twice")
    root = common_root(resolved)
    return {p: p.relative_to(root).as_posix() for p in resolved}


def _shown(value, root: Path):
    """A config value as a table shows it: paths below the common root relative to it (a moved
    report still reads right), lists as tuples (hashable, comparable)."""
    if isinstance(value, list):
        return tuple(_shown(v, root) for v in value)
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return Path(value).relative_to(root).as_posix()
        except ValueError:
            return value
    return value


def config_diff(runs: Sequence[Run], names: dict[Path, str] | None = None) -> dict[str, dict[str, object]]:
    """The dotted config keys whose values are not the same in every run: key -> {run name: value}
    (None where a run's config lacks the key), keys sorted."""
    names = names or run_names([r.path for r in runs])
    root = common_root([r.path for r in runs])
    flat = {names[r.path.resolve()]: {k: _shown(v, root) for k, v in flatten(to_dict(r.config)).items()}
            for r in runs}
    keys = sorted({k for cfg in flat.values() for k in cfg})
    return {k: {name: cfg.get(k) for name, cfg in flat.items()} for k in keys
            if len({repr(cfg.get(k)) for cfg in flat.values()}) > 1}


def _result_numbers(run: Run, metrics: Sequence[str] | None) -> dict[str, float | None]:
    """The run's summary numbers (accuracies in %), `metrics` or every one that is not bookkeeping."""
    summary = run.summary or (run.rows("epoch")[-1] if run.rows("epoch") else {})   # a run still going
    if metrics is None:
        metrics = [k for k, v in summary.items()
                   if k not in BOOKKEEPING and isinstance(v, (int, float)) and not isinstance(v, bool)]
    out = {}
    for k in metrics:
        v = summary.get(k)
        if "acc" in k:
            k, v = f"{k} (%)", None if v is None else 100 * v
        out[k] = v
    return out


def comparison_rows(runs: Sequence[Run], names: dict[Path, str] | None = None, *,
                    metrics: Sequence[str] | None = None) -> list[dict]:
    """One row per run: its name, the config keys that differ between the runs, and its summary
    numbers (`metrics`, default every result number; accuracies in %). A run without summary.json
    (stopped early or still going) shows its last epoch and "finished": False. When the pre-training
    runs weigh L_rec and L_cc differently, their total `loss` is replaced by its formula."""
    names = names or run_names([r.path for r in runs])
    diff = config_diff(runs, names)
    totals_differ = _totals_differ(runs)
    rows = []
    for r in runs:
        name = names[r.path.resolve()]
        numbers = _result_numbers(r, metrics)
        if totals_differ and r.config.protocol == "pretrain":   # not one scale: say what each total sums
            numbers = {"loss formula": loss_formula(r), **{k: v for k, v in numbers.items() if k != "loss"}}
        rows.append({"run": name, "finished": bool(r.summary), **{k: values[name] for k, values in diff.items()},
                     **numbers})
    return rows


def _totals_differ(runs: Sequence[Run]) -> bool:
    """Whether the pre-training runs weigh L_rec and L_cc differently (their `loss` is not one scale)."""
    return len({loss_formula(r) for r in runs if r.config.protocol == "pretrain"}) > 1


def config_diff_rows(diff: dict[str, dict[str, object]]) -> list[dict]:
    """The config diff as table rows: one per (key, value), with the runs that have that value."""
    rows = []
    for key, values in diff.items():
        by_value: dict[str, list[str]] = {}
        for name, v in values.items():
            by_value.setdefault("(not set)" if v is None else str(v), []).append(name)
        rows += [{"key": key, "value": v, "runs": ", ".join(names)} for v, names in by_value.items()]
    return rows


def loss_formula(run: Run) -> str | None:
    """What a pre-training run logs as `loss`: "(1 - a) L_rec + a L_cc" with a = model.cc_weight
    (hacm.losses.total_loss), "L_rec" without the contrast; None for a downstream run."""
    if run.config.protocol != "pretrain":
        return None
    a = run.config.model.cc_weight
    return "loss = L_rec" if a == 0 else f"loss = {1 - a:g} L_rec + {a:g} L_cc"


def epoch_curves(runs: Sequence[Run], names: dict[Path, str], metrics: Sequence[str]) -> dict[str, dict[str, list]]:
    """{protocol: {run name: epoch records}} for the runs that logged any of `metrics` per epoch,
    grouped by protocol (a pre-training loss and a classifier's are not on one scale).

    Pre-training losses are compared as themselves: `loss_cc` is left out of a run trained without
    the contrast (its logged 0 is no measurement), and the weighted total `loss` is kept only when
    every pre-training run weighs L_rec and L_cc alike (loss_formula), since (1 - a) L_rec + a L_cc
    of different a are not on one scale."""
    totals_differ = _totals_differ(runs)
    out: dict[str, dict[str, list]] = {}
    for r in runs:
        left_out = set()
        if r.config.protocol == "pretrain":
            left_out = {"loss_cc"} if r.config.model.cc_weight == 0 else set()
            left_out |= {"loss"} if totals_differ else set()
        rows = [{k: v for k, v in row.items() if k not in left_out} for row in r.rows("epoch")]
        if any(m in row for row in rows for m in metrics):
            out.setdefault(r.config.protocol, {})[names[r.path.resolve()]] = rows
    return out
