"""Low-level statistics of recorded skeletons, side by side with real reference values.

    python benchmarks/measure_skeletons.py DIR [DIR ...] [--fps 30] [--speed-window 5]

Each DIR is a directory of raw NTU `.skeleton` files or a hacm store. Prints, per statistic,
one column per DIR and one per real reference (hacm.data.skeleton_stats.REFERENCE, sources
listed under the table): bone-length spread across performers, within-clip bone stretch,
frame-to-frame jitter and its high-frequency part, joint speeds, clip lengths and recording
accidents (empty frames, extra bodies, lost and sideways frames, camera distance). What the
statistics mean is in the module's docstring and docs/data.md.
"""
from __future__ import annotations

import argparse
import sys
import time

from hacm.data.skeleton_stats import FPS, SPEED_WINDOW, compute_stats, read_skeletons, stats_table
from hacm.errors import HacmError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="+", help="raw .skeleton directories or hacm stores")
    parser.add_argument("--fps", type=float, default=FPS, help="frame rate of the recordings (default 30)")
    parser.add_argument("--speed-window", type=int, default=SPEED_WINDOW,
                        help="frames over which a speed is measured (default 5)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    stats = []
    for d in args.dirs:
        t0 = time.perf_counter()
        try:
            data = read_skeletons(d, progress=not args.no_progress)
            stats.append(compute_stats(data, fps=args.fps, speed_window=args.speed_window))
        except HacmError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        print(f"{d}: {len(data.clips)} clips from {data.files} files in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)
    print(stats_table(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
