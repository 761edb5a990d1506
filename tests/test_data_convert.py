"""convert_ntu end to end: manifest accounting, splits, restartability, CLI exit codes."""
import json

import numpy as np
import pytest

from hacm.cli import main
from hacm.data.convert import PARTS_DIR, convert_ntu
from hacm.data.store import Store
from hacm.errors import HacmError
from hacm.skeleton import CENTRE_JOINT
from ntu_files import person, write_skeleton


def good(f, x0=0.0):
    return person(x0 + 0.01 * f, 0.1 * np.sin(f), 3.0)


def make_raw(tmp_path, with_errors=True):
    raw = tmp_path / "raw"
    raw.mkdir()
    one = [[(1, good(f))] for f in range(30)]
    # performers 1 (xsub train) and 3 (test), cameras 1 (xview test) and 2 (train)
    for name in ("S001C001P001R001A001", "S001C002P003R001A002", "S002C002P001R002A003",
                 "S001C001P003R001A059"):
        write_skeleton(raw / f"{name}.skeleton", one)
    two = [[(1, good(f)), (2, good(f, 1.0))] for f in range(30)]
    write_skeleton(raw / "S001C002P001R001A050.skeleton", two)
    write_skeleton(raw / "S001C001P001R001A004.skeleton", [[]] * 5)                 # no_bodies
    write_skeleton(raw / "S001C001P001R001A005.skeleton", [[(1, good(0))]])        # too_short
    write_skeleton(raw / "S001C001P001R001A006.skeleton",                           # denoise_empty
                   [[(1, good(f)), (2, good(f, 1.0))] for f in range(5)])
    write_skeleton(raw / "S018C001P001R001A007.skeleton", one)                      # not in NTU-60
    write_skeleton(raw / "S001C001P001R001A008.skeleton", one)                      # listed missing
    if with_errors:
        write_skeleton(raw / "S001C001P001R001A009.skeleton", one, declared=31)     # format_error
    (tmp_path / "missing.txt").write_text("# NTU missing skeletons\nS001C001P001R001A008\nS009C001P001R001A001\n")
    return raw


EXPECTED = {"kept": 5, "no_bodies": 1, "too_short": 1, "denoise_empty": 1, "not_in_dataset": 1,
            "listed_missing": 1, "format_error": 1}


def test_manifest_accounts_for_every_file(tmp_path):
    raw = make_raw(tmp_path)
    report = convert_ntu(raw, tmp_path / "store", "ntu60", workers=1, allow_errors=True,
                         missing_list=tmp_path / "missing.txt", progress=False, chunk_size=4)
    assert report.inputs == 11 == report.kept + sum(report.dropped.values())
    assert {"kept": report.kept, **report.dropped} == EXPECTED
    rows = [json.loads(l) for l in (tmp_path / "store" / "manifest.jsonl").read_text().splitlines()]
    assert [r["file"] for r in rows] == sorted(p.name for p in raw.glob("*.skeleton"))
    by_file = {r["file"]: r for r in rows}
    assert "S001C001P001R001A009.skeleton:842: unexpected end of file after 30 frames: line 1 declares 31" \
        in by_file["S001C001P001R001A009.skeleton"]["message"]
    assert by_file["S001C001P001R001A004.skeleton"]["empty_frames"] == [0, 1, 2, 3, 4]
    summary = json.loads((tmp_path / "store" / "manifest_summary.json").read_text())
    assert summary["inputs"] == 11 and summary["kept"] == 5 and summary["dropped"]["format_error"] == 1
    assert not (tmp_path / "store" / PARTS_DIR).exists()

    store = Store.open(tmp_path / "store", verify=True)
    kept = [r for r in rows if r["status"] == "kept"]
    assert [store.names[r["index"]] for r in kept] == [r["name"] for r in kept]
    assert sorted(store.labels.tolist()) == [0, 1, 2, 49, 58]
    two = int(np.flatnonzero(store.names == "S001C002P001R001A050")[0])
    assert store.num_actors[two] == 2 and store.lengths[two] == 30
    # centred on actor 1's spine-mid in frame 0
    np.testing.assert_allclose(store.frames(0)[0, 0, CENTRE_JOINT], 0, atol=1e-6)
    np.testing.assert_allclose(store.frames(0)[0, 5], good(5) - good(0)[CENTRE_JOINT], atol=1e-5)
    names = store.names
    xsub_train = set(names[store.split("ntu60-xsub", "train")])
    assert xsub_train == {"S001C001P001R001A001", "S002C002P001R002A003", "S001C002P001R001A050"}
    assert set(names[store.split("ntu60-xview", "test")]) == {"S001C001P001R001A001", "S001C001P003R001A059"}


def test_errors_fail_unless_allowed_and_cli_exit_codes(tmp_path, capsys):
    raw = make_raw(tmp_path)
    with pytest.raises(HacmError, match="1 input.*could not be converted.*declares 31"):
        convert_ntu(raw, tmp_path / "store", "ntu60", workers=1, progress=False)
    assert not (tmp_path / "store" / "meta.json").exists()        # nothing published
    assert main(["data", "ntu", "--raw", str(raw), "--out", str(tmp_path / "store"), "--dataset", "ntu60",
                 "--workers", "1"]) == 2
    assert "could not be converted" in capsys.readouterr().err
    assert main(["data", "ntu", "--raw", str(raw), "--out", str(tmp_path / "store"), "--dataset", "ntu60",
                 "--workers", "1", "--allow-errors"]) == 0
    assert Store.open(tmp_path / "store").num_classes == 60
    assert main(["data", "info", str(tmp_path / "store")]) == 0
    out = capsys.readouterr().out
    assert "ntu60-xsub" in out and "samples   6" in out
    assert main(["data", "ntu", "--raw", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s2"),
                 "--dataset", "ntu60"]) == 2


def _store_bytes(path):
    store = Store.open(path)
    return ((path / "frames.bin").read_bytes(), store.names.tolist(), store.labels.tolist(),
            {b: store.split(b, "train").tolist() for b in store.benchmarks()},
            (path / "manifest.jsonl").read_text())


def test_restart_gives_identical_result(tmp_path, monkeypatch):
    raw = make_raw(tmp_path, with_errors=False)
    kwargs = dict(workers=1, progress=False, chunk_size=3, missing_list=tmp_path / "missing.txt")
    convert_ntu(raw, tmp_path / "a", "ntu120", **kwargs)
    reference = _store_bytes(tmp_path / "a")

    # A run killed after two of its four parts: the rerun converts only the other two.
    import hacm.data.convert as convert
    real, written = convert._write_part, []

    def dying(chunk, *args):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(chunk.index)
        return real(chunk, *args)

    monkeypatch.setattr(convert, "_write_part", dying)
    with pytest.raises(KeyboardInterrupt):
        convert_ntu(raw, tmp_path / "b", "ntu120", **kwargs)
    assert sorted(p.name for p in (tmp_path / "b" / PARTS_DIR).iterdir()) == ["part-00000.npz", "part-00001.npz"]
    monkeypatch.setattr(convert, "_write_part", real)
    (tmp_path / "b" / PARTS_DIR / "part-00003.npz.tmp123").write_bytes(b"half")   # a killed write
    report = convert_ntu(raw, tmp_path / "b", "ntu120", **kwargs)
    assert report.reused_parts == 2
    assert _store_bytes(tmp_path / "b") == reference

    # Parallel conversion gives the same store.
    convert_ntu(raw, tmp_path / "c", "ntu120", **(kwargs | {"workers": 2}))
    assert _store_bytes(tmp_path / "c") == reference


def test_synth_json_names_the_dataset(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for name in ("S001C001P001R001A001", "S001C002P003R001A002"):
        write_skeleton(raw / f"{name}.skeleton", [[(1, good(f))] for f in range(10)])
    (raw / "synth.json").write_text(json.dumps({"dataset": "synth", "class_names": ["a", "b"]}))
    report = convert_ntu(raw, tmp_path / "store", workers=1, progress=False)
    store = Store.open(tmp_path / "store")
    assert report.dataset == "synth" and store.class_names == ["a", "b"]
    assert store.benchmarks() == ["synth-xsub", "synth-xview"]
