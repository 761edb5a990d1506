"""Writes small, format-correct NTU `.skeleton` files for tests (and reads nothing)."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def format_skeleton(frames: list[list[tuple[int, np.ndarray]]], declared: int | None = None,
                    fmt: str = "") -> str:
    """frames: per frame a list of (body id, xyz [25, 3]) -> the text of a .skeleton file.

    Fields other than x, y, z get plausible constant values. `declared` overrides line 1;
    `fmt` formats x, y, z (default: exact repr; ".7g" looks like the real files).
    """
    lines = [str(len(frames) if declared is None else declared)]
    for bodies in frames:
        lines.append(str(len(bodies)))
        for body_id, xyz in bodies:
            lines.append(f"{body_id} 0 1 2 1 2 0 0.01 -0.02 2")
            lines.append("25")
            for x, y, z in np.asarray(xyz, dtype=np.float64).tolist():
                lines.append(f"{x:{fmt}} {y:{fmt}} {z:{fmt}} 250.5 180.25 1000.5 500.25 0.1 0.2 0.3 0.9 2")
    return "\r\n".join(lines) + "\r\n"


def write_skeleton(path, frames, declared: int | None = None, fmt: str = "") -> Path:
    path = Path(path)
    path.write_text(format_skeleton(frames, declared, fmt), newline="")
    return path


def person(x: float = 0.0, y: float = 0.0, z: float = 3.0, height: float = 1.6, width: float = 0.4) -> np.ndarray:
    """[25, 3] joints spread `width` in x and `height` in y around (x, y, z): an upright body."""
    t = np.linspace(0.0, 1.0, 25)
    xyz = np.stack([x + width * (t - 0.5) * ((-1) ** np.arange(25)),
                    y + height * (t - 0.5), np.full(25, z)], axis=1)
    return xyz
