"""`hacm` command line: one parser, subcommands registered by each concern's own module.

A problem with user input (HacmError) is printed as one clear line and exits with status 2;
no traceback is shown for it.
"""
from __future__ import annotations

import argparse
import sys

from hacm.errors import HacmError


def build_parser() -> argparse.ArgumentParser:
    from hacm.cli import data as data_cli

    parser = argparse.ArgumentParser(prog="hacm", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data_cli.register(sub)
    for name in ("train", "report"):
        try:
            module = __import__(f"hacm.cli.{name}", fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != f"hacm.cli.{name}":
                raise
            continue
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
