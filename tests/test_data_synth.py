"""The synthetic NTU generator: file layout, determinism, the clean model and the sensor."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

from hacm.data import raw_ntu, synth
from hacm.data.denoise import denoise
from hacm.data.synth import ACTIONS, SensorModel, generate_sequence, make_subject, record, write_synthetic
from hacm.errors import HacmError
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS, bone_lengths

NAMES = [a.name for a in ACTIONS]
TWO_PERSON = [a.name for a in ACTIONS if a.two_person]


def _clean(name: str, performer: int, seed: int = 0, rng_seed: int = 0) -> np.ndarray:
    spec = ACTIONS[NAMES.index(name)]
    subjects = [make_subject(seed, performer), make_subject(seed, performer, partner=True)]
    return generate_sequence(spec, subjects, np.random.default_rng(rng_seed)).xyz   # [A, T, 25, 3]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Every class, 3 performers (so 3 setups), 1 replication, 3 cameras: 63 files per performer."""
    out = tmp_path_factory.mktemp("synth")
    summary = write_synthetic(out, seed=0, performers=3, replications=1, progress=False)
    return out, summary


def test_action_set_has_single_and_two_person_classes():
    assert len(set(NAMES)) == len(NAMES)
    assert sum(not a.two_person for a in ACTIONS) >= 12
    assert len(TWO_PERSON) >= 2
    assert all(any(t.actor == 1 for t in ACTIONS[NAMES.index(n)].program) for n in TWO_PERSON)


def test_file_names_count_and_meta(dataset):
    out, summary = dataset
    files = sorted(p.name for p in out.glob("*.skeleton"))
    assert len(files) == summary.num_files == 3 * 1 * 3 * len(ACTIONS)
    for name in files:
        m = re.fullmatch(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})\.skeleton", name)
        assert m is not None, name
        setup, camera, performer, replication, action = map(int, m.groups())
        assert setup == synth.setup_of(performer, replication)
        assert camera in (1, 2, 3) and replication == 1 and 1 <= action <= len(ACTIONS)
    meta = json.loads((out / "synth.json").read_text())
    assert meta["dataset"] == "synth" and meta["class_names"] == NAMES
    assert meta["two_person_classes"] == TWO_PERSON
    assert meta["seed"] == 0 and meta["performers"] == 3 and meta["num_files"] == len(files)


def test_files_parse_and_denoise_to_the_performers(dataset):
    """Every file parses; the standard denoiser removes exactly the spurious bodies and keeps one
    (two for interactions) actor present in every kept frame."""
    out, summary = dataset
    extra_bodies = extra_files = lost_files = 0
    for path in sorted(out.glob("*.skeleton")):
        raw = raw_ntu.parse_skeleton_file(path)
        name = NAMES[raw_ntu.parse_sample_name(path.name)["action"] - 1]
        actors = 2 if name in TWO_PERSON else 1
        assert all(b.joints.shape == (len(b.frames), NUM_JOINTS, 3) for b in raw.bodies)
        # the performers are tracked in every frame that has a body, under one bodyID each
        assert all(len(b.frames) == raw.num_frames for b in raw.bodies[:actors])
        assert raw.num_frames + len(raw.empty_frames) == raw.declared_frames >= 40
        extra_bodies += len(raw.bodies) - actors
        extra_files += len(raw.bodies) > actors
        lost_files += bool(raw.empty_frames)
        result = denoise(raw)
        assert result.frames.shape == (actors, raw.num_frames, NUM_JOINTS, 3), path.name
        assert result.frames.reshape(actors, raw.num_frames, -1).any(axis=2).all(), path.name
        assert len(result.dropped_bodies) == len(raw.bodies) - actors, path.name
    assert extra_bodies == summary.ghost_bodies + summary.furniture_bodies
    assert 0 < extra_files < summary.num_files / 2          # some files, not most
    assert lost_files > 0 and summary.lost_frames > 0


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    kwargs = dict(performers=1, replications=1, cameras=(2,), classes=["clap", "hug"], progress=False)
    write_synthetic(tmp_path / "a", seed=3, **kwargs)
    write_synthetic(tmp_path / "b", seed=3, **kwargs)
    write_synthetic(tmp_path / "c", seed=4, **kwargs)
    for name in ("S001C002P001R001A001.skeleton", "S001C002P001R001A002.skeleton", "synth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "S001C002P001R001A001.skeleton").read_bytes() != \
           (tmp_path / "c" / "S001C002P001R001A001.skeleton").read_bytes()


def test_subsets_reproduce_the_full_set(dataset, tmp_path):
    """A class/camera/performer subset writes the same takes as the full run (labels renumbered)."""
    out, _ = dataset
    write_synthetic(tmp_path, performers=3, replications=1, cameras=(3,), classes=["hug"], progress=False)
    hug = NAMES.index("hug") + 1
    assert (tmp_path / "S003C003P003R001A001.skeleton").read_bytes() == \
           (out / f"S003C003P003R001A{hug:03d}.skeleton").read_bytes()
    assert json.loads((tmp_path / "synth.json").read_text())["class_names"] == ["hug"]


def test_bone_lengths_fixed_per_subject_and_differ_between_subjects():
    per_subject = []
    for performer in (1, 2, 3):
        bones = np.concatenate([bone_lengths(_clean(n, performer)[0]) for n in ("walk forward", "bow", "jump")])
        assert np.abs(bones - bones[0]).max() < 1e-9          # [frames, 24]: rigid bones in every frame
        per_subject.append(bones[0])
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(per_subject[i] - per_subject[j]).max() > 0.01


def test_camera_view_is_rigid_and_noise_free_without_a_sensor():
    perf = generate_sequence(ACTIONS[NAMES.index("handshake")],
                             [make_subject(0, 1), make_subject(0, 1, partner=True)], np.random.default_rng(0))
    quiet = SensorModel(noise_sd=0, spike_rate=0, lost_file_prob=0, ghost_prob=0, furniture_prob=0)
    rec = record(perf, synth.camera_view(0, 1, 1), np.random.default_rng(0), quiet)
    assert [b.kind for b in rec.bodies] == ["person", "person"] and rec.lost_frames.size == 0
    for a, body in enumerate(rec.bodies):
        np.testing.assert_allclose(bone_lengths(body.xyz), bone_lengths(perf.xyz[a]), atol=1e-9)
        np.testing.assert_allclose(np.linalg.norm(body.quat, axis=-1), 1.0, atol=1e-9)
        assert 1.5 < body.xyz[..., 2].mean() < 4.5            # a few metres in front of the camera
    assert rec.bodies[0].body_id != rec.bodies[1].body_id


def test_sensor_corruptions_are_the_ones_the_denoiser_expects():
    perf = generate_sequence(ACTIONS[NAMES.index("clap")], [make_subject(0, 1)], np.random.default_rng(0))
    always = SensorModel(lost_file_prob=1.0, ghost_prob=1.0, furniture_prob=1.0)
    for key in range(10):
        rec = record(perf, synth.camera_view(0, 1, 2), np.random.default_rng(key), always)
        T = rec.num_frames
        person, ghost, furniture = rec.bodies
        assert (person.kind, ghost.kind, furniture.kind) == ("person", "ghost", "furniture")
        assert 1 <= rec.lost_frames.size <= round(0.05 * T)
        for body in rec.bodies:
            assert not np.isin(body.frames, rec.lost_frames).any()
        assert 1 <= len(ghost.frames) <= 11                    # denoise (a): tracked for <= 11 frames
        assert len(furniture.frames) >= 0.8 * T - rec.lost_frames.size
        extent = furniture.xyz.max(axis=1) - furniture.xyz.min(axis=1)
        assert (extent[:, 0] > 0.8 * extent[:, 1]).all()      # denoise (b): flat -> every frame noisy
        noise = person.xyz - (perf.xyz[0, person.frames] @ synth.camera_view(0, 1, 2).rotation.T
                              + synth.camera_view(0, 1, 2).translation)
        typical = np.median(np.abs(noise))
        assert 0.002 < typical < 0.015                         # about a centimetre of sensor noise


def test_two_person_classes_have_two_moving_people():
    for name in TWO_PERSON:
        xyz = _clean(name, 2)
        assert xyz.shape[0] == 2
        gap = np.linalg.norm(xyz[0, :, 1] - xyz[1, :, 1], axis=-1)   # spine mid to spine mid
        assert 0.2 < gap.min() and gap.max() < 2.0
        assert all(np.ptp(xyz[a], axis=0).max() > 0.15 for a in (0, 1))
    assert _clean("clap", 2).shape[0] == 1


def _arm(side: str) -> list[int]:
    return [JOINT_NAMES.index(f"{side}_{part}") for part in ("elbow", "wrist", "hand", "hand_tip", "thumb")]


def test_wave_left_and_right_differ_only_in_the_waving_arm():
    right, left = _clean("wave right hand", 4)[0], _clean("wave left hand", 4)[0]   # same draws
    for moving, still in ((right, "left"), (left, "right")):
        active = "right" if still == "left" else "left"
        assert np.ptp(moving[:, _arm(active)[1:], 1], axis=0).min() > 0.5  # the forearm raised and waved
        assert np.ptp(moving[:, _arm(still)], axis=0).max() < 0.05         # hangs (breathing only)
    others = [j for j in range(NUM_JOINTS) if j not in _arm("left") + _arm("right")]
    np.testing.assert_allclose(right[:, others], left[:, others], atol=1e-9)


def test_direction_pairs_run_in_opposite_directions():
    subject = make_subject(0, 5)
    hand = JOINT_NAMES.index(f"{subject.dominant}_hand")
    raise_, lower = _clean("raise arm", 5)[0, :, hand, 1], _clean("lower arm", 5)[0, :, hand, 1]
    assert raise_[-1] - raise_[0] > 0.8 and lower[0] - lower[-1] > 0.8
    fwd, back = _clean("walk forward", 5)[0, :, 0], _clean("walk backward", 5)[0, :, 0]
    facing = np.array([0.0, 0.0, -1.0])                # single performers face the camera (-z)
    assert (fwd[-1] - fwd[0]) @ facing > 0.5 and (back[-1] - back[0]) @ facing < -0.4


def _signature(xyz: np.ndarray) -> np.ndarray:
    """The performer's mean joint velocity and mean joint speed over each quarter of the take."""
    quarters = np.array_split(np.diff(xyz[0], axis=0) * 30.0, 4)       # [T/4, 25, 3] each, m/s
    return np.concatenate([q.mean(axis=0).ravel() for q in quarters]
                          + [np.linalg.norm(q, axis=-1).mean(axis=0) for q in quarters])   # [400]


def test_class_velocity_signatures_separate_the_classes():
    """Sanity check of the clean model: per-class mean velocity signatures are all distinct, and
    a nearest-centroid rule fitted on performers 1-4 recognises unseen performers 5-6 far above
    chance (its errors are the intended hard cases, e.g. a left-handed performer's raise arm)."""
    centroids = np.stack([np.mean([_signature(_clean(n, p, rng_seed=r)) for p in (1, 2, 3, 4) for r in (0, 1)],
                                  axis=0) for n in NAMES])               # [C, 400]
    gaps = np.linalg.norm(centroids[:, None] - centroids[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 0.05 * np.median(np.linalg.norm(centroids, axis=1))
    hits = total = 0
    for label, n in enumerate(NAMES):
        for p in (5, 6):
            for r in (0, 1):
                s = _signature(_clean(n, p, rng_seed=r))
                hits += int(np.argmin(np.linalg.norm(centroids - s, axis=1))) == label
                total += 1
    assert hits / total > 0.7, hits / total            # chance is 1 / len(NAMES)


def test_bad_arguments_are_reported(tmp_path):
    with pytest.raises(HacmError, match="unknown synthetic class"):
        write_synthetic(tmp_path, classes=["moonwalk"], progress=False)
    with pytest.raises(HacmError, match="cameras"):
        write_synthetic(tmp_path, cameras=(1, 4), progress=False)
    with pytest.raises(HacmError, match="max_frames"):
        write_synthetic(tmp_path, min_frames=80, max_frames=50, progress=False)
    (tmp_path / "S001C001P099R001A001.skeleton").write_text("0\n")
    with pytest.raises(HacmError, match="would not write"):
        write_synthetic(tmp_path, performers=1, replications=1, classes=["nod"], progress=False)


def test_cross_subject_is_not_cross_setup():
    # with replications >= 2 a performer is seen in several setups: the synth-xsub test performers
    # must not be exactly the performers of one setup (they were, with one setup per performer)
    from hacm.data.splits import NTU60_XSUB_TRAIN_PERFORMERS

    for performers, replications in ((6, 3), (10, 2)):
        setups = {"train": set(), "test": set()}
        for p in range(1, performers + 1):
            part = "train" if p in NTU60_XSUB_TRAIN_PERFORMERS else "test"
            setups[part] |= {synth.setup_of(p, r) for r in range(1, replications + 1)}
        assert setups["train"] == setups["test"] == {1, 2, 3}
