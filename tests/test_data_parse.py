"""NTU .skeleton parser: values, body tracking, 0-body frames and every malformed-input message."""
import numpy as np
import pytest

from hacm.data.raw_ntu import (_layout_fast, _layout_walk, _Lines, _parse_decimals, parse_sample_name,
                               parse_skeleton_file)
from hacm.errors import FormatError
from ntu_files import format_skeleton, person, write_skeleton


def test_sample_name():
    assert parse_sample_name("S001C002P003R002A013.skeleton") == {
        "name": "S001C002P003R002A013", "setup": 1, "camera": 2, "performer": 3, "replication": 2, "action": 13}
    with pytest.raises(FormatError, match="expected SsssCcccPpppRrrrAaaa"):
        parse_sample_name("S1C2P3R2A13.skeleton")


def test_values_bodies_and_empty_frames(tmp_path):
    a, b = person(0.0), person(1.0)
    frames = [[(72057594037931101, a)], [], [(72057594037931101, a + 0.5), (72057594037931102, b)]]
    raw = parse_skeleton_file(write_skeleton(tmp_path / "x.skeleton", frames))
    assert (raw.declared_frames, raw.num_frames, raw.empty_frames) == (3, 2, [1])
    assert [body.body_id for body in raw.bodies] == ["72057594037931101", "72057594037931102"]
    first, second = raw.bodies
    np.testing.assert_array_equal(first.frames, [0, 1])     # the 0-body frame is gone
    np.testing.assert_array_equal(second.frames, [1])
    np.testing.assert_array_equal(first.joints[1], (a + 0.5).astype(np.float32))
    np.testing.assert_array_equal(second.joints[0], b.astype(np.float32))
    assert first.joints.dtype == np.float32


def _lines(frames, declared=None):
    return format_skeleton(frames, declared).split("\r\n")


def _write(tmp_path, lines):
    path = tmp_path / "bad.skeleton"
    path.write_text("\r\n".join(lines), newline="")
    return path


def _error(tmp_path, lines) -> str:
    with pytest.raises(FormatError) as info:
        parse_skeleton_file(_write(tmp_path, lines))
    return str(info.value)


ONE = [[(7, person())]]
TWO = [[(7, person())], [(7, person())]]
# File layout of ONE/TWO: line 1 frames, line 2 bodies, line 3 body line, line 4 joint count,
# lines 5..29 joints; frame 2 starts on line 30.


def test_truncated_file(tmp_path):
    lines = _lines(TWO)
    assert ("bad.skeleton:20: unexpected end of file: expected 25 joint lines for body 1 of frame 1, found 15"
            in _error(tmp_path, lines[:19]))
    assert "bad.skeleton:30: unexpected end of file after 1 frames: line 1 declares 2" in _error(tmp_path, lines[:29])


def test_truncated_mid_line(tmp_path):
    lines = _lines(ONE)
    lines[10] = lines[10][:12]
    lines = lines[:11]
    assert "bad.skeleton:11: expected 12 fields on joint 7 of body 1 of frame 1, found" in _error(tmp_path, lines)


def test_wrong_body_field_count(tmp_path):
    lines = _lines(ONE)
    lines[2] += " 5"
    assert "bad.skeleton:3: expected 10 fields on the body line of body 1 of frame 1, found 11" in _error(tmp_path, lines)


def test_wrong_joint_field_count(tmp_path):
    lines = _lines(ONE)
    lines[8] = " ".join(lines[8].split()[:-1])
    assert "bad.skeleton:9: expected 12 fields on joint 5 of body 1 of frame 1, found 11" in _error(tmp_path, lines)


@pytest.mark.parametrize("token,expected", [("abc", "expected a number, found 'abc'"),
                                            ("1.5.2", "expected a number, found '1.5.2'"),
                                            ("nan", "expected a finite number, found 'nan'"),
                                            ("-inf", "expected a finite number, found '-inf'"),
                                            ("1e999", "expected a finite number, found '1e999'")])
def test_bad_number(tmp_path, token, expected):
    lines = _lines(TWO)
    fields = lines[40].split()
    fields[1] = token
    lines[40] = " ".join(fields)
    assert f"bad.skeleton:41: joint field y: {expected}" in _error(tmp_path, lines)


def test_bad_count_lines(tmp_path):
    lines = _lines(ONE)
    lines[0] = "two"
    assert "bad.skeleton:1: expected an integer (the number of frames), found 'two'" in _error(tmp_path, lines)
    lines = _lines(ONE)
    lines[1] = "1 1"
    assert "bad.skeleton:2: expected 1 field (the body count of frame 1), found 2" in _error(tmp_path, lines)


def test_joint_count_other_than_25(tmp_path):
    lines = _lines(ONE)
    lines[3] = "24"
    assert "bad.skeleton:4: expected joint count 25 for body 1 of frame 1, found 24" in _error(tmp_path, lines)


def test_frame_count_disagrees(tmp_path):
    more = _lines(TWO, declared=1)
    assert "bad.skeleton:30: unexpected content after the 1 frames declared on line 1" in _error(tmp_path, more)
    fewer = _lines(TWO, declared=3)
    assert "bad.skeleton:58: unexpected end of file after 2 frames: line 1 declares 3" in _error(tmp_path, fewer)


def test_empty_file_and_duplicate_body(tmp_path):
    assert "bad.skeleton:1: unexpected end of file: expected the number of frames" in _error(tmp_path, [""])
    lines = _lines([[(7, person()), (7, person())]])
    assert "bad.skeleton:30: bodyID 7 appears twice in frame 1" in _error(tmp_path, lines)


def test_trailing_blank_lines_and_lf_endings(tmp_path):
    path = tmp_path / "ok.skeleton"
    path.write_text(format_skeleton(TWO).replace("\r\n", "\n") + "\n\n", newline="")
    raw = parse_skeleton_file(path)
    assert raw.num_frames == 2 and raw.bodies[0].joints.shape == (2, 25, 3)


# The fast paths (vectorised layout check, SWAR decimals) against the precise ones.


def _random_frames(rng, num_frames=12, scale=1.0):
    frames = []
    for f in range(num_frames):
        ids = rng.choice([3, 72057594037931101, 72057594037931102, 40], size=rng.integers(0, 4), replace=False)
        frames.append([(int(i), rng.normal(size=(25, 3)) * scale * 10.0 ** rng.integers(-6, 3, size=(25, 3)))
                       for i in ids])
    return frames


def _reference_xyz(text: bytes, layout) -> np.ndarray:
    """float32(float(token)) of the first 3 fields of every joint line, line by line."""
    lines = text.split(b"\n")
    return np.array([[[float(t) for t in lines[first + j].split()[:3]] for j in range(25)]
                     for first in layout.occ_joint_line.tolist()], dtype=np.float64).astype(np.float32)


@pytest.mark.parametrize("fmt", ["", ".7g", ".7f", "+.4f", ".0f", ".3e"])
def test_fast_paths_match_precise_paths(tmp_path, fmt):
    rng = np.random.default_rng(len(fmt))
    for k in range(4):
        path = write_skeleton(tmp_path / f"r{k}.skeleton", _random_frames(rng), fmt=fmt)
        data = path.read_bytes()
        lines = _Lines(str(path), data)
        fast, walk = _layout_fast(lines), _layout_walk(lines)
        assert fast is not None
        assert (fast.declared, fast.kept, fast.empty_frames, fast.occ_ids) == \
               (walk.declared, walk.kept, walk.empty_frames, walk.occ_ids)
        np.testing.assert_array_equal(fast.occ_frames, walk.occ_frames)
        np.testing.assert_array_equal(fast.occ_joint_line, walk.occ_joint_line)
        reference = _reference_xyz(data, walk)                                   # [n_occ, 25, 3]
        for body in parse_skeleton_file(path).bodies:
            occurrences = [k for k, body_id in enumerate(walk.occ_ids) if body_id == body.body_id]
            np.testing.assert_array_equal(body.joints, reference[occurrences])  # bit-exact


def test_exponents_and_odd_numbers_parse(tmp_path):
    lines = _lines(ONE)
    odd = ["1.5e-05", "-2E+01", "+.5", "-7", "3.", "0.000000000000001", "123456789012345678", "-0"]
    for j, token in enumerate(odd):
        fields = lines[4 + j].split()
        fields[j % 3] = token
        lines[4 + j] = " ".join(fields)
    raw = parse_skeleton_file(_write(tmp_path, lines))
    got = raw.bodies[0].joints[0]
    for j, token in enumerate(odd):
        assert got[j, j % 3] == np.float32(float(token))
    assert np.signbit(got[7, 1])


def test_parse_decimals_is_exact():
    rng = np.random.default_rng(1)
    values = rng.normal(size=6000) * 10.0 ** rng.integers(-9, 9, 6000)
    formats = ["{:.7f}", "{:.9g}", "{:+.3f}", "{:.0f}", "{:.1f}", "{}", "{:.12f}", "{:.15g}"]
    tokens = [formats[i % len(formats)].format(v).encode() for i, v in enumerate(values)]
    tokens += [b"5.", b".5", b"-.5", b"+7", b"-0", b"0", b"123456789012345", b"-0.0000000000001",
               b"1.2.3", b"--1", b"1-2", b"1e5", b"nan", b".", b"-", b"+-1", b"1234567890123456", b"0x1", b"1,5"]
    text = b" ".join(tokens) + b"\n" + b"pad " * 8
    starts = np.concatenate(([0], np.flatnonzero(np.frombuffer(text, np.uint8) == 32)[:len(tokens) - 1] + 1))
    got, ok = _parse_decimals(text, starts)
    plain = [len(t.lstrip(b"+-")) <= 15 and all(c in b"0123456789." for c in t.lstrip(b"+-"))
             and t.count(b".") <= 1 and any(c in b"0123456789" for c in t) and t[1:2] not in (b"+", b"-")
             for t in tokens]
    np.testing.assert_array_equal(ok, plain)             # every plain decimal takes the fast path
    expected = np.array([float(t) if p else 0.0 for t, p in zip(tokens, plain)])
    np.testing.assert_array_equal(np.where(ok, got, 0.0), expected)
    assert np.array_equal(np.signbit(got[ok]), np.signbit(expected[ok]))


@pytest.mark.parametrize("seed", range(3))
def test_fast_layout_never_accepts_what_the_walk_rejects(tmp_path, seed):
    rng = np.random.default_rng(seed)
    base = format_skeleton(_random_frames(rng, num_frames=6)).split("\r\n")
    for _ in range(40):
        lines = list(base)
        i = int(rng.integers(0, len(lines)))
        kind = rng.integers(0, 5)
        if kind == 0:
            del lines[i]
        elif kind == 1:
            lines.insert(i, lines[i])
        elif kind == 2:
            lines[i] = str(rng.integers(0, 30))
        elif kind == 3:
            lines[i] = " ".join(lines[i].split()[:-1])
        else:
            lines[i] = lines[i] + " 1"
        data = "\r\n".join(lines).encode()
        parsed = _Lines("m.skeleton", data)
        fast = _layout_fast(parsed)
        try:
            walk = _layout_walk(parsed)
        except FormatError:
            assert fast is None
            continue
        if fast is not None:
            assert (fast.declared, fast.kept, fast.empty_frames, fast.occ_ids) == \
                   (walk.declared, walk.kept, walk.empty_frames, walk.occ_ids)
            np.testing.assert_array_equal(fast.occ_joint_line, walk.occ_joint_line)
