"""`hacm ensemble RUN ...`: fuse the saved per-clip scores of evaluation runs of several streams."""
from __future__ import annotations

import argparse
from pathlib import Path

from hacm.errors import HacmError


def register(subparsers) -> None:
    text = "fuse linear-probe / fine-tune runs of several streams (joint, bone, motion) by their softmax scores"
    p = subparsers.add_parser(
        "ensemble", help=text,
        description=text + ". Runs are grouped by stream (data.bone, data.vel) and train.seed; each seed's "
                           "streams are fused as a weighted sum of softmax scores, and every stream and the "
                           "fusion are compared with the joint stream over seeds (spread, bootstrap interval, "
                           "Holm-adjusted p).")
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="evaluation run directories")
    p.add_argument("--weights", nargs="+", default=[], metavar="STREAM=W",
                   help="weight of a stream's scores, e.g. joint=1 bone=1 motion=0.5 (default 1 each); "
                        "'bone motion' is written bone_motion")
    p.set_defaults(func=_ensemble)


def parse_weights(items: list[str]) -> dict[str, float]:
    weights = {}
    for item in items:
        stream, sep, value = item.partition("=")
        try:
            weights[stream.replace("_", " ")] = float(value) if sep else float("nan")
        except ValueError:
            weights[stream] = float("nan")
        if not sep or weights[stream.replace("_", " ")] != weights[stream.replace("_", " ")]:
            raise HacmError(f"--weights {item!r}: expected STREAM=NUMBER, e.g. bone=0.5")
    return weights


def _ensemble(args: argparse.Namespace) -> int:
    from hacm.ensemble import ensemble, format_result

    print(format_result(ensemble(args.runs, parse_weights(args.weights))))
    return 0
