"""`hacm` command line: one parser, subcommands registered by each concern's own module.

A problem with user input (HacmError) is printed as one clear line and exits with status 2;
no traceback is shown for it. Parsing the arguments and reporting their errors imports neither
torch nor numpy (tests/test_cli_errors.py checks it), so `hacm --help` and every usage error answer
at once; each command imports what it needs when it runs.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

from hacm import __version__
from hacm.errors import HacmError, did_you_mean

_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


class Parser(argparse.ArgumentParser):
    """argparse with a did-you-mean for a mistyped command or choice (subcommands inherit the class)."""

    def error(self, message: str):
        match = _INVALID_CHOICE.search(message)
        if match:
            choices = re.findall(r"'([^']*)'", match.group(2)) or [c.strip() for c in match.group(2).split(",")]
            message += did_you_mean(match.group(1), choices)
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    from hacm.cli import data, ensemble, report, train

    parser = Parser(
        prog="hacm", description="hacm: the HA-CM workbench for self-supervised skeleton action recognition "
                                 "(data, pre-training, evaluation, notebook reports).")
    parser.add_argument("--version", action="version", version=f"hacm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, train, ensemble, report):
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
    except BrokenPipeError:   # `hacm config list | head`: the reader has had enough, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("hacm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
