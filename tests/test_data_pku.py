"""PKU-MMD converter: intervals -> samples, all-zero drop, actor 2 rule, splits, centring, malformed lines."""
import json

import numpy as np
import pytest

from hacm.data.pku import convert_pku, read_pku_labels, read_pku_skeleton
from hacm.data.store import Store
from hacm.errors import FormatError, HacmError


def write_video(raw, video, frames, labels):
    """frames [T, 2, 25, 3] -> skeleton/<video>.txt; labels: lines of label/<video>.txt."""
    (raw / "skeleton").mkdir(parents=True, exist_ok=True)
    (raw / "label").mkdir(exist_ok=True)
    text = "\n".join(" ".join(repr(float(v)) for v in f.reshape(-1)) for f in frames) + "\n"
    (raw / "skeleton" / f"{video}.txt").write_text(text)
    (raw / "label" / f"{video}.txt").write_text("\n".join(labels) + "\n")


def make_raw(tmp_path):
    raw = tmp_path / "pku"
    rng = np.random.default_rng(0)
    frames = rng.normal(size=(400, 2, 25, 3)).astype(np.float32)
    frames[:, 1] = 0                        # one person only ...
    frames[50:60] = 0                       # ... and a gap with nobody
    frames[200:, 1] = 1.5                   # a second person from frame 200
    write_video(raw, "0002-L", frames, ["3,0,40,1", "5,50,60,2", "51,100,400,1"])
    write_video(raw, "0003-M", frames[:100], ["1,0,10,1"])
    (raw / "cross_subject.txt").write_text("Training videos:\n0002-L, 0002-M,\nValidation videos:\n0003-M\n")
    (raw / "cross_view.txt").write_text("Training videos:\n0003-M\nValidation videos:\n0002-L\n")
    return raw, frames


def test_convert(tmp_path):
    raw, frames = make_raw(tmp_path)
    report = convert_pku(raw, tmp_path / "store", 1, centre=False, workers=1, progress=False)
    assert (report.inputs, report.kept, report.dropped) == (4, 3, {"all_zero": 1})
    store = Store.open(tmp_path / "store")
    assert store.names.tolist() == ["0002-L_0", "0002-L_2", "0003-M_0"]
    assert store.labels.tolist() == [2, 50, 0]
    assert store.num_actors.tolist() == [1, 2, 1] and store.lengths.tolist() == [40, 300, 10]
    np.testing.assert_array_equal(store.frames(0)[0], frames[0:40, 0])        # no centring (MAMP)
    np.testing.assert_array_equal(store.frames(1), frames[100:400].transpose(1, 0, 2, 3))
    assert store.split("pku1-xsub", "train").tolist() == [0, 1]
    assert store.split("pku1-xview", "train").tolist() == [2]
    assert store.camera.tolist() == [1, 1, 2]


def test_malformed(tmp_path):
    raw, _ = make_raw(tmp_path)
    skel = raw / "skeleton" / "0002-L.txt"
    lines = skel.read_text().splitlines()
    lines[7] = " ".join(lines[7].split()[:149])
    skel.write_text("\n".join(lines))
    with pytest.raises(FormatError, match=r"0002-L.txt:8: expected 150 numbers per frame .* found 149"):
        read_pku_skeleton(skel)
    lines[7] = lines[8].replace(lines[8].split()[3], "x1", 1)
    skel.write_text("\n".join(lines))
    with pytest.raises(FormatError, match=r"0002-L.txt:8: expected a finite number, found 'x1'"):
        read_pku_skeleton(skel)
    label = raw / "label" / "0003-M.txt"
    for text, msg in (("1,0,10\n", "expected 4 comma-separated"), ("52,0,10,1\n", "expected a label in 1..51, found 52"),
                      ("1,10,5,1\n", "expected 0 <= start < end, found start 10, end 5"), ("a,1,5,1\n", "expected integers")):
        label.write_text("1,0,10,1\n" + text)
        with pytest.raises(FormatError, match=f"0003-M.txt:2: {msg}"):
            read_pku_labels(label)
    with pytest.raises(HacmError, match="could not be converted"):
        convert_pku(raw, tmp_path / "store", 1, workers=1, progress=False)
    report = convert_pku(raw, tmp_path / "store", 1, workers=1, progress=False, allow_errors=True)
    assert report.dropped == {"format_error": 2}
    with pytest.raises(HacmError, match="no split file cross_subject_v2.txt"):
        convert_pku(raw, tmp_path / "store2", 2, workers=1, progress=False)


def test_centring_is_a_conversion_option(tmp_path):
    # centre=True (the default) puts actor 1's spine-mid joint of its first frame at the origin,
    # as NTU samples; centre=False keeps MAMP's camera coordinates. Both are recorded in the summary.
    raw, frames = make_raw(tmp_path)
    convert_pku(raw, tmp_path / "centred", 1, workers=1, progress=False)
    convert_pku(raw, tmp_path / "camera", 1, centre=False, workers=1, progress=False)
    centred, camera = Store.open(tmp_path / "centred"), Store.open(tmp_path / "camera")
    for i in range(len(camera.names)):
        raw_clip, clip = camera.frames(i), centred.frames(i)
        origin = raw_clip[0, 0, 1]                                 # spine-mid (joint 2, 0-based 1)
        np.testing.assert_allclose(clip[0, 0, 1], 0.0, atol=1e-6)
        present = raw_clip.reshape(*raw_clip.shape[:2], -1).any(-1)
        np.testing.assert_allclose(clip[present], raw_clip[present] - origin, atol=1e-6)
        assert (clip[~present] == 0).all()                         # absent frames stay zero
    assert json.loads((tmp_path / "centred" / "manifest_summary.json").read_text())["centred"] is True
    assert json.loads((tmp_path / "camera" / "manifest_summary.json").read_text())["centred"] is False
