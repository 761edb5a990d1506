"""`hacm` command line: one parser, subcommands registered by each concern's own module.

A problem with user input (HacmError) is printed as one clear line and exits with status 2;
no traceback is shown for it.
"""
from __future__ import annotations

import argparse
import sys

from hacm.errors import HacmError


def build_parser() -> argparse.ArgumentParser:
    # The command modules import torch, models and notebooks lazily, inside each command.
    from hacm.cli import data, report, train

    parser = argparse.ArgumentParser(
        prog="hacm", description="hacm: the HA-CM workbench for self-supervised skeleton action recognition "
                                 "(data, pre-training, evaluation, notebook reports).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, train, report):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HacmError as exc:
        print(f"hacm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("hacm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
