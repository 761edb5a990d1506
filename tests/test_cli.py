"""The command line a new user meets first: fast answers (no torch to parse arguments or report a
usage or config error), did-you-mean, --version, `config list|show`, and the README's examples."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import hacm
import hacm.report
from hacm import machine
from hacm.cli import build_parser, main
from hacm.errors import HacmError
from hacm.config import PACKAGE_CONFIG_DIR, from_dict, load_config, shipped_configs
from test_train import make_toy_store

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "numpy", "matplotlib", "plotly")
PROTOCOLS = ("pretrain", "linprobe", "finetune", "knn")

# What happens before a command does its work: --help, usage errors, config errors, config list/show.
NO_HEAVY_IMPORTS = """
import sys
from hacm.cli import main
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
print(sorted(m for m in {heavy!r} if m in sys.modules))
"""


def test_parsing_and_cli_errors_import_no_torch_numpy_or_plotting():
    argvs = [["--help"], ["--version"], ["pretrian"], ["data", "snyth"], ["pretrain", "--help"],
             ["pretrain", "--config", "synth_pretrian"],
             ["pretrain", "--config", "synth_pretrain", "--set", "train.epoch=3"],
             ["linprobe", "--config", "synth_pretrain"],
             ["knn", "--config", "synth_linprobe", "--dry-run"],
             ["config", "list"], ["config", "show", "synth_pretrain"]]
    proc = subprocess.run([sys.executable, "-c", NO_HEAVY_IMPORTS.format(argvs=argvs, heavy=HEAVY)],
                          capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout[-2000:]


def usage_error(capsys, argv) -> str:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_did_you_mean_for_commands_and_choices(capsys):
    assert usage_error(capsys, ["pretrian"]).endswith("(did you mean pretrain?)")
    assert usage_error(capsys, ["data", "snyth"]).endswith("(did you mean synth?)")
    assert usage_error(capsys, ["config", "sho"]).endswith("(did you mean show?)")
    assert "did you mean" not in usage_error(capsys, ["zzzz"])     # nothing close: no guess


def config_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip()


def test_did_you_mean_for_config_names_and_keys(capsys):
    err = config_error(capsys, ["pretrain", "--config", "synth_pretrian"])
    assert err == ("hacm: error: synth_pretrian: no such config file (did you mean synth_pretrain?); "
                   "`hacm config list` lists the shipped configs")
    err = config_error(capsys, ["config", "show", "synth_pretrain", "--set", "train.epoch=3"])
    assert "unknown key train.epoch (did you mean train.epochs?)" in err
    err = config_error(capsys, ["pretrain", "--config", "synth_pretrain", "--set", "model.geometri=euclidean"])
    assert "unknown key model.geometri (did you mean model.geometry?)" in err


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"hacm {hacm.__version__}"


def test_config_list_describes_every_shipped_config(capsys):
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    shipped = sorted(p.stem for p in PACKAGE_CONFIG_DIR.glob("*.yaml"))
    assert [line.split()[0] for line in lines] == shipped
    listed = dict(line.split(None, 1) for line in lines)
    assert listed["ntu60_xsub_pretrain"] == "HA-CM pre-training, ntu60-xsub"
    assert listed["mamp_ntu60_xsub_linprobe"] == "MAMP linear probe, ntu60-xsub"
    assert all(shipped_configs().values())                  # every shipped config says what it is


def test_config_show_prints_the_resolved_config(capsys):
    assert main(["config", "show", "synth_linprobe", "--set", "train.epochs=3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {PACKAGE_CONFIG_DIR / 'synth_linprobe.yaml'}\n")
    assert from_dict(yaml.safe_load(out)) == load_config("synth_linprobe", ["train.epochs=3"])


def test_knn_reads_a_downstream_config(capsys):
    assert main(["knn", "--config", "synth_linprobe", "--set", "train.pretrained=runs/x", "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert "synth_linprobe is a linprobe config: kNN reads its data and model settings" in captured.err
    shown = from_dict(yaml.safe_load(captured.out))
    assert shown.protocol == "knn" and shown.model == load_config("synth_linprobe").model
    # other protocols still refuse a config of another protocol
    assert "is a pretrain config; run `hacm pretrain`" in config_error(capsys, ["linprobe", "--config", "synth_pretrain"])


def test_one_epoch_run_of_a_config_with_a_longer_warmup(capsys, tmp_path):
    store = make_toy_store(tmp_path / "store", clips_per_class=6)
    cfg = tmp_path / "long_warmup.yaml"
    cfg.write_text(yaml.safe_dump({
        "data": {"store": str(store.path), "benchmark": "synth-xsub", "window_size": 24, "num_workers": 0},
        "model": {"num_frames": 24, "t_patch": 4, "dim": 16, "depth": 1, "heads": 2, "decoder_dim": 16,
                  "decoder_depth": 1},
        "train": {"epochs": 10, "warmup_epochs": 5, "batch_size": 8, "device": "cpu", "checkpoint_every": 0}}))
    assert main(["pretrain", "--config", str(cfg), "--set", "train.epochs=1", "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    assert "train.warmup_epochs (5) is more than train.epochs (1): warmup clamped to train.epochs" in err
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["train"]["epochs"] == resolved["train"]["warmup_epochs"] == 1
    with pytest.warns(UserWarning, match=r"train.warmup_epochs \(5\) is more than train.epochs \(1\)"):
        load_config(cfg, {"train.epochs": 1})               # notebooks: a warning in the cell


def readme_commands() -> list[str]:
    """Every `hacm ...` command in the README's bash blocks (torchrun's `-m hacm ...` included)."""
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    commands = []
    for line in "\n".join(blocks).replace("\\\n", " ").splitlines():   # continued lines joined
        words = shlex.split(line, comments=True)
        if words and words[0] == "hacm":
            commands.append(words[1:])
        elif "-m" in words and words[words.index("-m") + 1:][:1] == ["hacm"]:
            commands.append(words[words.index("-m") + 2:])
    return commands


README_COMMANDS = readme_commands()


def test_the_readme_has_its_examples():
    assert {c[0] for c in README_COMMANDS} >= {"data", "pretrain", "linprobe", "knn", "config", "report"}


@pytest.mark.parametrize("argv", README_COMMANDS, ids=" ".join)
def test_every_readme_command_is_accepted(argv, capsys, monkeypatch):
    """Each example parses; a training example's config resolves for its command (--dry-run); config
    commands run; a batch file named exists."""
    monkeypatch.chdir(REPO)
    args = build_parser().parse_args(argv)
    if argv[0] in PROTOCOLS:
        assert main([*argv, "--dry-run"]) == 0, capsys.readouterr().err
    elif argv[0] == "config":
        assert main(argv) == 0, capsys.readouterr()
    elif argv[0] == "report":
        assert args.batch.is_file()


def test_a_batch_states_its_machine_first(capsys, monkeypatch):
    def stop(*args, **kwargs):
        raise HacmError("stopped before the first job")

    monkeypatch.setattr(hacm.report, "run_batch", stop)
    assert main(["report", str(REPO / "reports" / "batches" / "demo.yaml")]) == 2
    first = capsys.readouterr().out.splitlines()[0]
    assert first == f"machine: {machine.describe()}"
    assert f"{torch.get_num_threads()} threads" in first and machine.cpu_model() in first
    assert ("no GPU" in first) != torch.cuda.is_available()


def test_data_info_warns_about_empty_and_tiny_classes():
    from hacm.cli.data import class_warnings

    summary = {"classes": {"a": 40, "b": 40, "c": 0, "d": 6, "e": 40},
               "splits": {"pku1-xsub": {"train": {"count": 90, "per_class": [30, 30, 0, 6, 24]},
                                        "test": {"count": 36, "per_class": [10, 10, 0, 0, 16]}}}}
    assert class_warnings(summary) == [
        "1 of 5 classes have no clips at all: c",
        "pku1-xsub train: 1 tiny classes (fewer than 0.25 x the median 30 clips): d (6)",
        "pku1-xsub test: 1 classes have no clips: d"]
    summary["classes"]["c"], summary["splits"]["pku1-xsub"]["test"]["per_class"][3] = 0, 10
    summary["splits"]["pku1-xsub"]["train"]["per_class"][3] = 30
    assert class_warnings(summary) == ["1 of 5 classes have no clips at all: c"]


def test_summary_text_shows_percent_and_chance():
    from hacm.cli.train import summary_text

    text = summary_text("runs/k", {"protocol": "knn", "knn20_acc": 0.17123456789, "knn1_acc": 0.125,
                                   "chance_acc": 0.05, "train_clips": 10, "seconds": 3.14159265})
    assert text.splitlines() == ["run_dir: runs/k", "protocol: knn", "knn20_acc: 17.1 %  (chance 5.0 %)",
                                 "knn1_acc: 12.5 %  (chance 5.0 %)", "train_clips: 10", "seconds: 3.142",
                                 "chance level: 5.0 % (always answering the most frequent test class)"]
