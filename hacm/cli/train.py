"""`hacm pretrain|linprobe|finetune|knn` and `hacm config list|show|check`.

Configs are read and checked before torch is imported, so a config error answers at once."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from hacm import paths
from hacm.config import load_config, replace, shipped_configs, to_yaml
from hacm.errors import ConfigError, HacmError

PROTOCOL_HELP = {
    "pretrain": "self-supervised HA-CM pre-training",
    "linprobe": "linear probe on a frozen pre-trained encoder",
    "finetune": "fine-tune a pre-trained encoder (semi-supervised via data.subset_fraction)",
    "knn": "kNN accuracy of frozen pre-trained features",
}


def _add_overrides(parser) -> None:
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one key, e.g. --set train.epochs=10 (repeatable)")


def register(subparsers) -> None:
    for protocol, text in PROTOCOL_HELP.items():
        p = subparsers.add_parser(protocol, help=text, description=text)
        p.add_argument("--config", required=True, metavar="FILE",
                       help="hacm or MAMP/HA-CM YAML, or the name of a shipped config (e.g. synth_pretrain)")
        _add_overrides(p)
        p.add_argument("--out", metavar="RUN_DIR", type=paths.resolve,
                       help="run directory (default runs/<protocol>-<config name>)")
        if protocol != "knn":
            p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/checkpoints/last.pt")
        p.add_argument("--dry-run", action="store_true",
                       help="check the config and print it with the run directory and the device plan "
                            "(device, precision, batch, loader, time per epoch where measured); train nothing")
        p.set_defaults(func=_run_protocol, protocol=protocol)

    config = subparsers.add_parser("config", help="list, show and check configuration files")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    listing = config_sub.add_parser("list", help="the configs shipped with hacm, one line each")
    listing.set_defaults(func=_list)
    show = config_sub.add_parser("show", help="print a config resolved (protocol defaults, file, --set)",
                                 description="Print the resolved YAML of a shipped config name or a file, "
                                             "with the notes taken while reading it.")
    show.add_argument("name", metavar="NAME", help="a shipped config name (`hacm config list`) or a file")
    _add_overrides(show)
    show.set_defaults(func=_show)
    check = config_sub.add_parser("check", help="resolve config files (or every *.yaml under a directory)",
                                  description="Resolve each file, print the resolved config and notes, "
                                              "or one error line; exit 1 if any file failed.")
    check.add_argument("files", nargs="+", metavar="FILE")
    _add_overrides(check)
    check.add_argument("--quiet", action="store_true", help="one status line per file")
    check.set_defaults(func=_check)


def _print_notes(notes: list[str], stream) -> None:
    for note in notes:
        print(f"# note: {note}", file=stream)


def _load_for(protocol: str, name: str, overrides: list[str], notes: list[str]):
    """The config of a `hacm PROTOCOL` run. kNN has no configs of its own: it reads the data and
    encoder settings of any config (as the notebooks do), so `hacm knn` runs one as protocol knn."""
    cfg = load_config(name, overrides, notes)
    if protocol == "knn" and cfg.protocol != "knn" and not any(o.startswith("protocol=") for o in overrides):
        notes.append(f"{name} is a {cfg.protocol} config: kNN reads its data and model settings")
        cfg = load_config(name, ["protocol=knn", *overrides])
    return cfg


def _run_protocol(args: argparse.Namespace) -> int:
    notes: list[str] = []
    cfg = _load_for(args.protocol, args.config, args.overrides, notes)
    if cfg.protocol != args.protocol:
        raise ConfigError(f"{args.config}: is a {cfg.protocol} config; run `hacm {cfg.protocol}` "
                          f"(or --set protocol={args.protocol})")
    _print_notes(notes, sys.stderr)
    cfg = _anchored(cfg)
    out = args.out or paths.resolve(Path("runs") / f"{args.protocol}-{Path(args.config).stem}")
    if args.dry_run:
        print(f"# hacm {args.protocol} would write {out}\n{to_yaml(cfg)}")
        if cfg.protocol != "knn":
            from hacm.plan import device_plan   # torch: after the config is known to be good

            lines = device_plan(cfg, world_size=int(os.environ.get("WORLD_SIZE", "1"))).lines
            print("# device plan\n" + "\n".join(f"#   {line}" for line in lines))
        return 0
    import logging

    from hacm import train   # torch and the models load only once the config is known to be good

    logging.basicConfig(level=logging.INFO, format="hacm: %(message)s")
    summary = train.run(cfg, out, resume=getattr(args, "resume", False))
    if summary and os.environ.get("RANK", "0") == "0":   # under torchrun, rank 0 reports
        print(summary_text(out, summary))
    return 0


def summary_text(run_dir, summary: dict) -> str:
    """A finished run's summary as a person reads it: one "key: value" line each, accuracies in
    percent with one decimal, each beside the chance level when the run measured it (kNN: always
    answering the most frequent test class), other numbers to 4 significant digits."""
    chance = summary.get("chance_acc")
    beside = f"  (chance {100 * chance:.1f} %)" if chance is not None else ""
    lines = [f"run_dir: {run_dir}"]
    for key, value in summary.items():
        if key == "chance_acc" or value is None:
            continue
        if key.endswith("_acc") and isinstance(value, (int, float)):
            lines.append(f"{key}: {100 * value:.1f} %{beside}")
        elif isinstance(value, float):
            lines.append(f"{key}: {value:.4g}")
        else:
            lines.append(f"{key}: {value}")
    if chance is not None:
        lines.append(f"chance level: {100 * chance:.1f} % (always answering the most frequent test class)")
    return "\n".join(lines)


def _anchored(cfg):
    """cfg with its store and pre-trained encoder read from the repository root (hacm.paths), as a
    notebook reads them, whatever directory the command runs in."""
    pretrained = cfg.train.pretrained and str(paths.resolve(cfg.train.pretrained))
    return replace(cfg, data={"store": str(paths.resolve(cfg.data.store))}, train={"pretrained": pretrained})


def _expand(names: list[str]) -> list[Path]:
    files = []
    for name in names:
        p = Path(name)
        found = sorted(p.rglob("*.yaml")) if p.is_dir() else [p]
        if not found:   # a mistyped folder must not pass as "0 of 0 resolved"
            raise HacmError(f"{p}: directory holds no *.yaml config files")
        files.extend(found)
    return files


def _check(args: argparse.Namespace) -> int:
    failed = 0
    files = _expand(args.files)
    for path in files:
        notes: list[str] = []
        try:
            cfg = load_config(path, args.overrides, notes)
        except HacmError as exc:
            failed += 1
            print(f"error: {exc}")
            continue
        if args.quiet:
            print(f"ok: {path} ({cfg.protocol}, {len(notes)} notes)")
            continue
        _print_resolved(path, cfg, notes)
    print(f"{len(files) - failed} of {len(files)} config files resolved", file=sys.stderr)
    return 1 if failed else 0


def _print_resolved(path, cfg, notes: list[str]) -> None:
    print(f"# {path}")
    _print_notes(notes, sys.stdout)
    print(to_yaml(cfg))


def _list(args: argparse.Namespace) -> int:
    configs = shipped_configs()
    width = max(map(len, configs))
    for name, description in configs.items():
        print(f"{name:<{width}}  {description}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from hacm.config import resolve_config_path

    notes: list[str] = []
    cfg = load_config(args.name, args.overrides, notes)
    _print_resolved(resolve_config_path(args.name), cfg, notes)
    return 0
