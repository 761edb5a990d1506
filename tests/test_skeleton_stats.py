"""hacm.data.skeleton_stats: every statistic on constructed clips whose answer is known."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import chi2

from hacm.data.skeleton_stats import (
    FPS, REFERENCE, SEGMENTS, SPEED_WINDOW, Clip, SkeletonSet, coefficient_of_variation, compute_stats,
    bootstrap_cv_interval, read_skeletons, segment_lengths, stats_table,
)
from hacm.errors import FormatError, HacmError
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS
from ntu_files import write_skeleton

# Median of |v| for v ~ N(0, I_3): the square root of the median of a chi-square with 3 dof.
MEDIAN_NORM_3D = math.sqrt(chi2.ppf(0.5, 3))     # 1.5382


def body(upper_arm: float = 0.28, z: float = 3.0) -> np.ndarray:
    """An upright skeleton [25, 3] (metres, camera coordinates) with the given upper-arm length."""
    xy = {"spine_base": (0, 0), "spine_mid": (0, 0.25), "spine_shoulder": (0, 0.5), "neck": (0, 0.55),
          "head": (0, 0.7)}
    for side, sx in (("left", -1), ("right", 1)):
        elbow_y = 0.5 - upper_arm
        xy |= {f"{side}_shoulder": (0.18 * sx, 0.5), f"{side}_elbow": (0.18 * sx, elbow_y),
               f"{side}_wrist": (0.18 * sx, elbow_y - 0.25), f"{side}_hand": (0.18 * sx, elbow_y - 0.33),
               f"{side}_hand_tip": (0.18 * sx, elbow_y - 0.38), f"{side}_thumb": (0.15 * sx, elbow_y - 0.36),
               f"{side}_hip": (0.08 * sx, 0), f"{side}_knee": (0.08 * sx, -0.4),
               f"{side}_ankle": (0.08 * sx, -0.8), f"{side}_foot": (0.08 * sx, -0.85)}
    return np.array([[*xy[name], z] for name in JOINT_NAMES], dtype=np.float64)


def clip(joints, performer: int = 1, name: str = "c") -> Clip:
    return Clip(name, performer, np.asarray(joints, dtype=np.float64))


def stats_of(*clips: Clip, **kw):
    return compute_stats(SkeletonSet("test", list(clips), files=len(clips)), **kw)


def noisy_clip(sd: float, frames: int, seed: int = 0, performer: int = 1) -> Clip:
    rng = np.random.default_rng(seed)
    return clip(body() + rng.normal(0.0, sd, size=(frames, NUM_JOINTS, 3)), performer)


def test_white_noise_gives_the_known_median_frame_differences():
    """x[t] = rest + N(0, sd^2 I): x[t+1] - x[t] ~ N(0, 2 sd^2 I), the 2nd difference N(0, 6 sd^2 I)."""
    sd = 0.004
    stats = stats_of(noisy_clip(sd, 20_000))
    for joint in ("wrist", "spine_mid"):
        assert stats.jitter_mm[joint] == pytest.approx(1000 * sd * math.sqrt(2) * MEDIAN_NORM_3D, rel=0.03)
        assert stats.second_diff_mm[joint] == pytest.approx(1000 * sd * math.sqrt(6) * MEDIAN_NORM_3D, rel=0.03)
        assert stats.roughness[joint] == pytest.approx(math.sqrt(3), rel=0.04)


def test_constant_velocity_gives_its_speed_and_no_second_difference():
    """Wrists and feet glide at 1.5 m/s along x, the rest of the body stands still."""
    frames, v = 60, 1.5
    joints = np.repeat(body()[None], frames, axis=0)
    moving = [JOINT_NAMES.index(n) for n in ("left_wrist", "right_wrist", "left_foot", "right_foot")]
    joints[:, moving, 0] += v / FPS * np.arange(frames)[:, None]
    stats = stats_of(clip(joints))
    for part in ("wrist", "foot"):
        assert stats.speed[part] == pytest.approx((v, v), rel=1e-9)
    assert stats.jitter_mm["wrist"] == pytest.approx(1000 * v / FPS, rel=1e-9)
    assert stats.second_diff_mm["wrist"] == pytest.approx(0.0, abs=1e-9)
    assert stats.roughness["wrist"] == pytest.approx(0.0, abs=1e-9)
    assert stats.jitter_mm["spine_mid"] == 0.0 and math.isnan(stats.roughness["spine_mid"])
    # A speed over a window is displacement / time, whatever the window.
    assert stats_of(clip(joints), speed_window=1).speed["wrist"][0] == pytest.approx(v, rel=1e-9)


def test_speed_window_keeps_noise_from_passing_as_speed():
    """A still, noisy body: x[t+w] - x[t] is the difference of two independent noise draws for any
    w, so the speed over SPEED_WINDOW frames is SPEED_WINDOW times smaller than over one frame."""
    c = noisy_clip(0.004, 5_000)
    one, window = stats_of(c, speed_window=1).speed["wrist"][0], stats_of(c).speed["wrist"][0]
    assert window == pytest.approx(one / SPEED_WINDOW, rel=0.05)


def test_bone_cv_across_performers_is_the_known_coefficient_of_variation():
    lengths = {1: 0.25, 2: 0.30, 3: 0.35}
    clips = [clip(np.repeat(body(upper_arm=l)[None], 10, axis=0), performer=p) for p, l in lengths.items()]
    stats = stats_of(*clips)
    expected = 100 * np.std(list(lengths.values()), ddof=1) / np.mean(list(lengths.values()))   # 16.67 %
    assert stats.bone_cv["upper_arm"] == pytest.approx(expected, rel=1e-6)
    assert stats.bone_median["upper_arm"] == pytest.approx(0.30, rel=1e-6)
    assert stats.bone_cv["forearm"] == pytest.approx(0.0, abs=1e-6)     # every body has 0.25 m forearms
    assert stats.performers == 3


def test_bone_cv_interval_resamples_performers():
    lengths = [0.24, 0.26, 0.27, 0.29, 0.30, 0.31, 0.33]
    low, high = bootstrap_cv_interval(lengths)
    assert 0 < low < coefficient_of_variation(lengths) < high
    assert bootstrap_cv_interval(lengths) == (low, high)                      # seeded
    assert bootstrap_cv_interval([0.3, 0.3, 0.3]) == (0.0, 0.0)
    assert bootstrap_cv_interval([0.3, 0.4]) is None
    clips = [clip(np.repeat(body(upper_arm=l)[None], 2, axis=0), performer=p) for p, l in enumerate(lengths)]
    assert stats_of(*clips).bone_cv_ci["upper_arm"] == pytest.approx((low, high))
    assert f"[{low:.1f}, {high:.1f}]" in stats_table([stats_of(*clips)])


def test_bone_cv_pools_a_performers_clips_and_needs_two_performers():
    """Two clips of one performer count once, by the median over all their frames."""
    a = np.repeat(body(upper_arm=0.20)[None], 3, axis=0)
    b = np.repeat(body(upper_arm=0.30)[None], 5, axis=0)
    c = np.repeat(body(upper_arm=0.40)[None], 4, axis=0)
    stats = stats_of(clip(a, 1), clip(b, 1), clip(c, 2))            # performer 1: median of 3 x 0.2, 5 x 0.3
    assert stats.bone_cv["upper_arm"] == pytest.approx(100 * np.std([0.3, 0.4], ddof=1) / 0.35, rel=1e-6)
    assert stats_of(clip(a, 1)).bone_cv["upper_arm"] is None
    assert coefficient_of_variation([0.3]) is None


def test_within_clip_bone_stretch_is_measured_per_clip():
    """An upper arm alternating 0.9 L / 1.1 L: sd / mean = 0.1 * sqrt(T / (T - 1))."""
    frames = 1000
    joints = np.stack([body(upper_arm=0.28 * (0.9 if t % 2 else 1.1)) for t in range(frames)])
    stats = stats_of(clip(joints))
    assert stats.bone_within_clip_cv["upper_arm"] == pytest.approx(10 * math.sqrt(frames / (frames - 1)), rel=1e-6)
    assert stats.bone_within_clip_cv["spine"] == pytest.approx(0.0, abs=1e-6)


def test_segments_measure_what_they_name():
    b = body(upper_arm=0.31)
    assert segment_lengths(b[None], "upper_arm") == pytest.approx(np.array([[0.31, 0.31]]))
    assert segment_lengths(b[None], "shoulder_width") == pytest.approx(np.array([[0.36]]))
    assert segment_lengths(b[None], "spine") == pytest.approx(np.array([[0.5]]))
    assert set(SEGMENTS) >= {"upper_arm", "forearm", "thigh", "shin", "spine", "shoulder_width"}


def test_lost_frames_break_differences_and_are_counted():
    """A tracking loss (an all-zero frame) inside a still clip is no jump of 3 m."""
    joints = np.repeat(body()[None], 13, axis=0)
    joints[6] = 0.0                                    # two runs of 6 frames: long enough for a speed
    stats = stats_of(clip(joints))
    assert stats.jitter_mm["wrist"] == 0.0 and stats.speed["wrist"] == (0.0, 0.0)
    assert stats.lost_frame_share == pytest.approx(1 / 13)
    assert stats.length[0] == 13


def test_statistics_are_translation_invariant_except_camera_distance():
    c = noisy_clip(0.003, 300)
    moved = clip(c.joints + np.array([1.0, -0.5, 2.0]))
    a, b = dict(stats_of(c).rows()), dict(stats_of(moved).rows())
    assert b.pop("depth_m") == pytest.approx(a.pop("depth_m") + 2.0, abs=0.01)
    for key, value in a.items():
        if isinstance(value, float):
            assert b[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
        else:
            assert b[key] == value, key


def test_clip_lengths_and_sideways_frames():
    still = np.repeat(body()[None], 40, axis=0)
    sideways = np.repeat(body()[:, [1, 0, 2]][None], 10, axis=0)      # lying: x-extent > 0.8 y-extent
    stats = stats_of(clip(still[:20]), clip(still), clip(np.concatenate([still, sideways])))
    assert stats.length == (20, 40.0, (20 + 40 + 50) / 3, 50)
    assert stats.noisy_frame_share == pytest.approx(10 / 110)


def write_recordings(raw_dir):
    """Two files: one actor with 2 empty frames; two actors side by side."""
    rng = np.random.default_rng(1)
    still = lambda n, **kw: [body(**kw) + rng.normal(0, 0.002, (NUM_JOINTS, 3)) for _ in range(n)]
    one = [[(7, j)] for j in still(12, upper_arm=0.26)]
    one[3:3] = [[], []]
    write_skeleton(raw_dir / "S001C001P003R001A001.skeleton", one, fmt=".7g")
    left, right = still(20, upper_arm=0.30), still(20, upper_arm=0.30)
    two = [[(1, a - [0.6, 0, 0]), (2, b + [0.6, 0, 0])] for a, b in zip(left, right)]
    write_skeleton(raw_dir / "S001C002P004R001A050.skeleton", two, fmt=".7g")


def test_raw_directory_statistics(tmp_path):
    write_recordings(tmp_path)
    data = read_skeletons(tmp_path, progress=False)
    assert sorted(c.performer for c in data.clips) == [3, 4]
    stats = compute_stats(data)
    assert stats.empty_frame_share == pytest.approx(2 / (14 + 20))
    assert stats.multi_body_file_share == 0.5
    assert stats.two_actor_share == 0.5
    assert stats.length == (12, 16.0, 16.0, 20)
    assert stats.depth_m == pytest.approx(3.0, abs=0.01)
    assert stats.bone_median["upper_arm"] == pytest.approx(0.28, abs=0.01)


def test_a_store_gives_the_raw_directorys_statistics(tmp_path):
    from hacm.data.convert import convert_ntu

    raw = tmp_path / "raw"
    raw.mkdir()
    write_recordings(raw)
    convert_ntu(raw, tmp_path / "store", "ntu60", workers=1, progress=False)
    from_raw = dict(compute_stats(read_skeletons(raw, progress=False)).rows())
    from_store = dict(compute_stats(read_skeletons(tmp_path / "store", progress=False)).rows())
    for key in ("empty_frame_share", "multi_body_file_share", "depth_m"):      # raw files only
        assert from_raw.pop(key) is not None and from_store.pop(key) is None
    for key, value in from_raw.items():
        if isinstance(value, float):
            assert from_store[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key
        else:
            assert from_store[key] == value, key


def test_bad_input_is_named(tmp_path):
    with pytest.raises(HacmError, match="no .skeleton files"):
        read_skeletons(tmp_path)
    with pytest.raises(HacmError, match="no such directory"):
        read_skeletons(tmp_path / "missing")
    write_skeleton(tmp_path / "clip_7.skeleton", [[(1, body())]])
    with pytest.raises(FormatError, match="clip_7.skeleton"):
        read_skeletons(tmp_path, progress=False)
    with pytest.raises(HacmError, match=r"clip x: expected joints \[T, 25, 3\]"):
        stats_of(Clip("x", 1, np.zeros((4, 20, 3))))


def test_every_reference_names_a_statistic_and_the_table_shows_it():
    stats = stats_of(noisy_clip(0.003, 50, performer=1), noisy_clip(0.003, 50, seed=1, performer=2))
    keys = [k for k, _ in stats.rows()]
    assert set(REFERENCE) <= set(keys)
    table = stats_table([stats], names=["mine"])
    lines = table.splitlines()
    assert lines[0].split()[:2] == ["statistic", "mine"]
    assert {line.split()[0] for line in lines[1:len(keys) + 1]} == set(keys)
    row = next(line for line in lines if line.startswith("jitter_mm.wrist"))
    assert "7.3" in row.split() and "10.6" in row.split()          # the NTU and PKU references
    assert any(line.startswith("[1] ") for line in lines)
