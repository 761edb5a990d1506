"""Bad input on the command line: exit status 2 and one `hacm: error: ...` line naming the file,
line or field and what was expected; never a traceback."""
import pytest

from hacm.cli import main
from test_data_pku import make_raw as make_pku_raw
from test_data_store import random_records, write_store

NOT_UTF8 = b"\xff\xfe\x00not text"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("cli") / "store", random_records(12))


def error_line(capsys, argv) -> str:
    """Run `hacm argv`; assert status 2 and exactly one error line on stderr, return it."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("hacm: error: ")]
    assert code == 2, err
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "afile"
    path.write_text("not a directory\n")
    return path


def test_ntu_out_is_a_file(capsys, tmp_path, a_file):
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "S001C001P001R001A001.skeleton").write_text("1\n")
    line = error_line(capsys, ["data", "ntu", "--raw", raw, "--out", a_file, "--dataset", "ntu60"])
    assert f"{a_file}: exists and is not a directory" in line
    assert a_file.read_text() == "not a directory\n"     # nothing lost


def test_ntu_without_dataset_names_the_option(capsys, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    line = error_line(capsys, ["data", "ntu", "--raw", raw, "--out", tmp_path / "out"])
    assert "--dataset: expected 'ntu60' or 'ntu120' (none given;" in line


def test_synth_out_is_a_file(capsys, a_file):
    line = error_line(capsys, ["data", "synth", "--out", a_file, "--performers", "1"])
    assert f"{a_file}: exists and is not a directory" in line


def test_export_npz_out_is_a_directory_or_under_a_file(capsys, store, tmp_path, a_file):
    line = error_line(capsys, ["data", "export-npz", store.path, "--benchmark", "synth-xsub", "--out", tmp_path])
    assert f"{tmp_path}: is a directory (expected the path of the .npz file to write)" in line
    line = error_line(capsys, ["data", "export-npz", store.path, "--benchmark", "synth-xsub",
                               "--out", a_file / "x.npz"])
    assert f"{a_file}: exists and is not a directory" in line
    # a missing parent folder is created
    assert main(["data", "export-npz", str(store.path), "--benchmark", "synth-xsub",
                 "--out", str(tmp_path / "new" / "x.npz")]) == 0
    assert (tmp_path / "new" / "x.npz").is_file()


@pytest.mark.parametrize("name", ["splits.npz", "index.npz"])
def test_info_names_a_truncated_npz(capsys, store, tmp_path, name):
    copy = write_store(tmp_path / "store", random_records(12))
    data = (copy.path / name).read_bytes()
    (copy.path / name).write_bytes(data[:100])
    line = error_line(capsys, ["data", "info", copy.path])
    assert f"{copy.path / name}: not a .npz archive (truncated or corrupt" in line


def test_info_names_a_corrupt_npz_member(capsys, tmp_path):
    copy = write_store(tmp_path / "store", random_records(12))
    data = bytearray((copy.path / "splits.npz").read_bytes())
    data[60:200] = bytes(b ^ 0x55 for b in data[60:200])     # the zip directory survives, a member does not
    (copy.path / "splits.npz").write_bytes(bytes(data))
    line = error_line(capsys, ["data", "info", copy.path])
    assert f"{copy.path / 'splits.npz'}: cannot read:" in line


@pytest.mark.parametrize("which", ["split", "label"])
def test_pku_non_text_split_or_label_file(capsys, tmp_path, which):
    raw, _ = make_pku_raw(tmp_path)
    bad = raw / "cross_view.txt" if which == "split" else raw / "label" / "0003-M.txt"
    bad.write_bytes(b"Training videos:\n" + NOT_UTF8)
    line = error_line(capsys, ["data", "pku", "--raw", raw, "--out", tmp_path / "store", "--phase", "1",
                               "--workers", "1"])
    assert f"{bad}:2: expected UTF-8 text, found byte 0xff" in line


@pytest.mark.parametrize("command", [["pretrain", "--config"], ["config", "check"]])
def test_config_that_is_not_text(capsys, tmp_path, command):
    cfg = tmp_path / "binary.yaml"
    cfg.write_bytes(NOT_UTF8)
    code = main(command + [str(cfg), "--out" if command[0] == "pretrain" else "--quiet"]
                + ([str(tmp_path / "run")] if command[0] == "pretrain" else []))
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    expected = f"{cfg}: expected a UTF-8 text YAML file, found byte 0xff at offset 0"
    if command[0] == "pretrain":
        assert code == 2 and f"hacm: error: {expected}" in err
    else:   # config check reports each file and exits 1 if any failed
        assert code == 1 and f"error: {expected}" in out


def test_config_check_directory_without_yaml(capsys, tmp_path):
    line = error_line(capsys, ["config", "check", tmp_path])
    assert f"{tmp_path}: directory holds no *.yaml config files" in line


def test_pretrain_run_dir_is_a_file(capsys, store, a_file):
    line = error_line(capsys, ["pretrain", "--config", "synth_pretrain", "--out", a_file,
                               "--set", f"data.store={store.path}", "--set", "data.benchmark=synth-xsub",
                               "--set", "train.epochs=1", "--set", "train.warmup_epochs=0"])
    assert f"{a_file}: exists and is not a directory (needed for the run directory" in line
    assert a_file.read_text() == "not a directory\n"


def test_report_batch_that_is_not_text(capsys, tmp_path):
    batch = tmp_path / "batch.yaml"
    batch.write_bytes(NOT_UTF8)
    line = error_line(capsys, ["report", batch, "--out", tmp_path / "report"])
    assert f"{batch}: expected a UTF-8 text YAML file, found byte 0xff" in line
    assert not (tmp_path / "report").exists()
