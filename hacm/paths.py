"""Where hacm's relative paths point: the repository root, whatever the working directory.

A notebook's kernel runs in notebooks/, a terminal anywhere; the README's relative paths
(`reports/demo/data/store`, `runs/*`) mean the same place from both because every path a notebook
or the CLI takes goes through `resolve`:

- an absolute path (or `~/...`) is taken as it is;
- a relative path is read from the repository root, `repo_root()`;
- a relative path beginning with `data/` (as the shipped configs name their stores) that is not
  found there is read from the data root, `$HACM_DATA` (default: `<root>/data`).

The repository root is `$HACM_ROOT` when set; else the nearest directory at or above the working
directory that holds hacm's pyproject.toml (a checkout, wherever the kernel or shell stands in it);
else the working directory itself (hacm pip-installed and used outside a checkout: relative paths
then mean what they mean on the command line).

This module imports nothing heavy: the CLI resolves its paths before torch loads.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

from hacm.errors import HacmError

ROOT_ENV = "HACM_ROOT"
DATA_ENV = "HACM_DATA"
_PROJECT_NAME = re.compile(r'^name\s*=\s*"hacm"\s*$', re.M)
STORE_MARK = "meta.json"           # hacm.data.store.META_FILE (kept here so this module stays light)
RUN_MARK = "config.yaml"           # hacm.rundir.CONFIG_FILE
_SKIP = {".git", ".venv", "node_modules", "__pycache__", ".ipynb_checkpoints", "frames.bin"}


def _is_hacm_checkout(path: Path) -> bool:
    project = path / "pyproject.toml"
    try:
        return project.is_file() and bool(_PROJECT_NAME.search(project.read_text()))
    except OSError:
        return False


def repo_root() -> Path:
    """The directory relative paths are read from (module docstring: $HACM_ROOT, else the hacm
    checkout around the working directory, else the working directory)."""
    env = os.environ.get(ROOT_ENV)
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if _is_hacm_checkout(folder):
            return folder
    return cwd


def data_root() -> Path:
    """Where datasets live: $HACM_DATA (relative: from the repository root), else <root>/data."""
    env = os.environ.get(DATA_ENV)
    return resolve(env) if env else repo_root() / "data"


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path for `path` (module docstring): absolute as given, relative from the
    repository root, `data/...` from the data root when it is not under the repository root."""
    path = Path(path).expanduser()
    if path.is_absolute():
        return path
    root = repo_root()
    if path.parts[:1] == ("data",) and not (root / path).exists():
        return data_root().joinpath(*path.parts[1:])
    return root / path


def shown(path: Path) -> str:
    """A path as messages print it: relative to the repository root when inside it (what to type)."""
    try:
        return path.resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)


def find_marked(mark: str, *, roots: list[Path] | None = None, limit: int = 8, depth: int = 6) -> list[Path]:
    """Directories holding a file named `mark` below the repository root and the data root
    (breadth first, `depth` levels, at most `limit`): the stores (meta.json) or runs (config.yaml)
    an error message offers instead of a path that is not one."""
    found: list[Path] = []
    level = list(dict.fromkeys(r for r in (roots or [repo_root(), data_root()]) if r.is_dir()))
    for _ in range(depth):
        below = []
        for folder in level:
            try:
                entries = sorted(folder.iterdir())
            except OSError:
                continue
            if (folder / mark).is_file():
                if folder not in found:
                    found.append(folder)
                if len(found) >= limit:
                    return found
                continue            # a store or run: its inside is not searched
            below += [e for e in entries if e.is_dir() and e.name not in _SKIP and not e.is_symlink()]
        level = below
    return found


def existing(what: str, mark: str) -> str:
    """"; stores here: a, b" (or "; no stores below <root>") for an error message."""
    found = find_marked(mark)
    if not found:
        return f"; no {what} found below {repo_root()} or {data_root()}"
    return f"; {what} that exist: " + ", ".join(shown(p) for p in found)


def not_found(name: str, path: Path, problem: str, advice: str, *, what: str = "stores", mark: str = STORE_MARK) -> HacmError:
    """The one-line error for a path parameter that does not name what it should: the parameter,
    the absolute path tried, what is wrong, what to do, and what does exist."""
    return HacmError(f"{name}: {path} {problem}; {advice}{existing(what, mark)}")
