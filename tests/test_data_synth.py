"""The synthetic NTU generator: file layout, determinism, the clean model and the sensor."""
from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest

from hacm.data import raw_ntu, synth
from hacm.data.denoise import denoise
from hacm.data.synth import (ACTIONS, Population, SensorModel, Variation, generate_sequence, make_subject, record,
                              write_synthetic)
from hacm.errors import HacmError
from hacm.skeleton import JOINT_NAMES, NUM_JOINTS, bone_lengths

NAMES = [a.name for a in ACTIONS]
TWO_PERSON = [a.name for a in ACTIONS if a.two_person]


# Performances without the nuisances that the test at hand does not look at
ALONE = Variation(bystander_prob=0.0)
STILL = Variation(bystander_prob=0.0, fidgets=0.0, coupling=0.0)
QUIET = SensorModel(noise_mm=0, drift_mm=0, spike_rate=0, occlusion_prob=0, swap_prob=0, lost_file_prob=0,
                    ghost_prob=0, furniture_prob=0)


def _clean(name: str, performer: int, seed: int = 0, rng_seed: int = 0, variation: Variation = ALONE) -> np.ndarray:
    spec = ACTIONS[NAMES.index(name)]
    subjects = [make_subject(seed, performer), make_subject(seed, performer, partner=True)]
    return generate_sequence(spec, subjects, np.random.default_rng(rng_seed), variation=variation).xyz  # [A, T, 25, 3]


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
    """Every file parses; the standard denoiser removes exactly the spurious bodies and keeps the
    people: one, two for interactions and for one-person takes with a bystander, present in every
    kept frame. So the number of actors does not give the interaction classes away."""
    out, summary = dataset
    extra_bodies = extra_files = lost_files = bystanders = 0
    for path in sorted(out.glob("*.skeleton")):
        raw = raw_ntu.parse_skeleton_file(path)
        name = NAMES[raw_ntu.parse_sample_name(path.name)["action"] - 1]
        # people: tracked in every frame and upright (furniture is flat, ghosts are short-lived)
        people = [b for b in raw.bodies if len(b.frames) == raw.num_frames
                  and np.ptp(b.joints[..., 1], axis=1).mean() > 0.6]
        actors = len(people)
        assert actors == 2 if name in TWO_PERSON else actors in (1, 2), path.name
        bystanders += name not in TWO_PERSON and actors == 2
        assert all(b.joints.shape == (len(b.frames), NUM_JOINTS, 3) for b in raw.bodies)
        assert raw.num_frames + len(raw.empty_frames) == raw.declared_frames >= 20
        extra_bodies += len(raw.bodies) - actors
        extra_files += len(raw.bodies) > actors
        lost_files += bool(raw.empty_frames)
        result = denoise(raw)
        assert result.frames.shape == (actors, raw.num_frames, NUM_JOINTS, 3), path.name
        assert result.frames.reshape(actors, raw.num_frames, -1).any(axis=2).all(), path.name
        assert len(result.dropped_bodies) == len(raw.bodies) - actors, path.name
    assert extra_bodies == summary.ghost_bodies + summary.furniture_bodies
    assert bystanders == summary.bystanders > 0
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
        bones = np.concatenate([bone_lengths(_clean(n, performer)[0]) for n in ("walk forward", "sit down", "kick")])
        assert np.abs(bones - bones[0]).max() < 1e-9          # [frames, 24]: rigid bones in every frame
        per_subject.append(bones[0])
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(per_subject[i] - per_subject[j]).max() > 0.01


def test_camera_view_is_rigid_and_noise_free_without_a_sensor():
    perf = generate_sequence(ACTIONS[NAMES.index("handshake")],
                             [make_subject(0, 1), make_subject(0, 1, partner=True)], np.random.default_rng(0))
    rec = record(perf, synth.camera_view(0, 1, 1), np.random.default_rng(0), QUIET)
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
        assert 0.0002 < typical < 0.005                        # tenths of a millimetre to millimetres


def test_two_person_classes_have_two_moving_people():
    for name in TWO_PERSON:
        xyz = _clean(name, 2)
        assert xyz.shape[0] == 2
        gap = np.linalg.norm(xyz[0, :, 1] - xyz[1, :, 1], axis=-1)   # spine mid to spine mid
        assert 0.2 < gap.min() and gap.max() < 3.2
        assert all(np.ptp(xyz[a], axis=0).max() > 0.15 for a in (0, 1))
    assert _clean("clap", 2).shape[0] == 1


def _arm(side: str) -> list[int]:
    return [JOINT_NAMES.index(f"{side}_{part}") for part in ("elbow", "wrist", "hand", "hand_tip", "thumb")]


def test_wave_left_and_right_differ_only_in_the_waving_arm():
    right, left = _clean("wave right hand", 4, variation=STILL)[0], _clean("wave left hand", 4, variation=STILL)[0]
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
    assert raise_[-1] - raise_[0] > 0.6 and lower[0] - lower[-1] > 0.6
    # the pair walks towards each other, or apart: the distance between them falls, or grows
    for name, sign in (("walk towards each other", -1), ("walk apart", 1)):
        xyz = _clean(name, 5)
        gap = np.linalg.norm(xyz[0, :, 0] - xyz[1, :, 0], axis=-1)
        assert sign * (gap[-1] - gap[0]) > 0.8, (name, gap[0], gap[-1])


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


# ---------------------------------------------------------------- the world's structure, as named

def _pose_and_motion(xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The performer's clip-level pose statistics (per-joint mean and std over frames, [150]) and
    motion signature (mean joint velocity over each third of the take, [225])."""
    performer = xyz[0]
    pose = np.concatenate([performer.mean(0).ravel(), performer.std(0).ravel()])
    motion = np.concatenate([t.mean(0).ravel() for t in np.array_split(np.diff(performer, axis=0), 3)])
    return pose, motion


def _nearest_centroid(train: dict[str, list], test: dict[str, list]) -> float:
    names = list(train)
    centroids = np.stack([np.mean(train[n], axis=0) for n in names])
    scale = np.concatenate([train[n] for n in names]).std(0) + 1e-9
    hits = [int(np.argmin(np.linalg.norm((centroids - x) / scale, axis=1))) == names.index(n)
            for n in names for x in test[n]]
    return float(np.mean(hits))


@pytest.mark.parametrize("pair", [("raise arm", "lower arm"), ("sit down", "stand up"),
                                  ("push", "pull"), ("put on hat", "take off hat")])
def test_order_pairs_share_their_poses_and_differ_in_motion(pair):
    """Classes live in motion, not in pose: a class and its time-reversed twin visit the same poses
    (clip-level pose statistics tell them apart no better than chance) and move through them in
    opposite directions (the motion signature tells them apart)."""
    feats = {part: {"pose": {n: [] for n in pair}, "motion": {n: [] for n in pair}} for part in ("train", "test")}
    for performer in range(1, 13):
        part = "train" if performer <= 8 else "test"
        for key in range(4):
            for name in pair:
                pose, motion = _pose_and_motion(_clean(name, performer, rng_seed=100 * performer + key))
                feats[part]["pose"][name].append(pose)
                feats[part]["motion"][name].append(motion)
    by_pose = _nearest_centroid(feats["train"]["pose"], feats["test"]["pose"])
    by_motion = _nearest_centroid(feats["train"]["motion"], feats["test"]["motion"])
    assert by_pose < 0.75, (pair, by_pose)         # 32 test takes: chance 0.5, sd about 0.09
    assert by_motion > 0.9, (pair, by_motion)


def test_every_class_belongs_to_a_family_of_confusable_classes():
    families: dict[str, list[str]] = {}
    for a in ACTIONS:
        families.setdefault(a.family, []).append(a.name)
    assert set(families) == {"order", "manner", "limb", "phase", "relation"}
    assert all(len(members) >= 2 for members in families.values())
    assert all(a.two_person == (a.family == "relation") for a in ACTIONS)


def test_facing_alternates_between_replications_as_in_ntu():
    """Odd replications face camera 1, even ones camera 3: the take is seen from the front by one
    camera and from the side by the other."""
    perf = {r: generate_sequence(ACTIONS[NAMES.index("clap")], [make_subject(0, 1)], np.random.default_rng(0),
                                 facing=synth.facing_of(r), variation=Variation(facing_sd=0.0)) for r in (1, 2)}

    def shoulder_depth_share(r, camera):            # 0: shoulders across the view, 1: along it
        xyz = perf[r].xyz[0] @ synth.camera_view(0, 1, camera).rotation.T
        line = xyz[:, JOINT_NAMES.index("left_shoulder")] - xyz[:, JOINT_NAMES.index("right_shoulder")]
        return float(np.median(np.abs(line[:, 2]) / np.linalg.norm(line[:, [0, 2]], axis=1)))

    assert shoulder_depth_share(1, 1) < 0.3 and shoulder_depth_share(1, 3) > 0.8
    assert shoulder_depth_share(2, 3) < 0.3 and shoulder_depth_share(2, 1) > 0.8


def test_population_spans_children_to_adults_and_both_hands():
    subjects = [make_subject(0, p) for p in range(1, 81)]
    heights = np.array([s.offsets[:, 1].clip(min=0).sum() for s in subjects])   # upward bones
    assert heights.min() < 0.85 * np.median(heights) and heights.max() > 1.1 * np.median(heights)
    assert 0.02 < np.mean([s.dominant == "left" for s in subjects]) < 0.35
    adults = [make_subject(0, p, population=Population(child_share=0.0)) for p in range(1, 81)]
    assert min(s.offsets[:, 1].clip(min=0).sum() for s in adults) > heights.min()


def test_bystanders_appear_in_one_person_takes_at_their_rate():
    spec = ACTIONS[NAMES.index("nod")]
    subjects = [make_subject(0, 1), make_subject(0, 1, partner=True)]
    counts = {p: sum(generate_sequence(spec, subjects, np.random.default_rng(k),
                                       variation=Variation(bystander_prob=p)).xyz.shape[0] == 2 for k in range(200))
              for p in (0.0, 0.3)}
    assert counts[0.0] == 0 and 35 < counts[0.3] < 85


def test_fidgets_move_joints_the_action_leaves_free():
    left_hand = JOINT_NAMES.index("left_hand")        # free while the right hand waves
    spread = {f: max(np.ptp(_clean("wave right hand", 3, rng_seed=k,
                                   variation=Variation(bystander_prob=0, fidgets=f, coupling=0))[0, :, left_hand], axis=0).max()
                     for k in range(12)) for f in (0.0, 4.0)}
    assert spread[0.0] < 0.05 and spread[4.0] > 0.1, spread


def test_sensor_noise_grows_with_depth_and_towards_the_extremities():
    T = 3000
    rng = np.random.default_rng(0)
    near, far = np.zeros((T, NUM_JOINTS, 3)), np.zeros((T, NUM_JOINTS, 3))
    near[..., 2], far[..., 2] = 2.0, 4.0
    sensor = SensorModel(drift_mm=0.0)
    noise_near, noise_far = synth.sensor_noise(near, rng, sensor), synth.sensor_noise(far, rng, sensor)
    assert 3.0 < noise_far.std() / noise_near.std() < 5.3                     # (4 / 2) ** 2 = 4
    spine, tip = JOINT_NAMES.index("spine_mid"), JOINT_NAMES.index("left_hand_tip")
    assert 4.0 < noise_near[:, tip].std() / noise_near[:, spine].std() < 6.0
    # jitter is lightly smoothed; the drift is slow: its frame-to-frame steps are a small part of it
    drift = synth.sensor_noise(near, rng, SensorModel(noise_mm=0.0, drift_mm=6.0))
    assert np.diff(drift, axis=0).std() < 0.3 * drift.std()


def test_side_views_occlude_the_far_arm_and_swap_limbs():
    perf = generate_sequence(ACTIONS[NAMES.index("clap")], [make_subject(0, 1)], np.random.default_rng(0),
                             facing=synth.facing_of(1), variation=Variation(facing_sd=0.0, bystander_prob=0.0))
    always = replace(QUIET, occlusion_prob=1.0, swap_prob=1.0)
    side, front = synth.camera_view(0, 1, 3), synth.camera_view(0, 1, 1)
    rec_side = record(perf, side, np.random.default_rng(1), always)
    rec_front = record(perf, front, np.random.default_rng(1), always)
    assert (rec_front.bodies[0].state == 2).all()                              # seen from the front: all tracked
    inferred = rec_side.bodies[0].state == 1
    assert inferred.any() and inferred.any(axis=0).sum() == 5                  # one arm's five joints
    clean = perf.xyz[0] @ side.rotation.T + side.translation
    wrist, other = JOINT_NAMES.index("left_wrist"), JOINT_NAMES.index("right_wrist")
    swapped = np.linalg.norm(rec_side.bodies[0].xyz[:, wrist] - clean[:, other], axis=-1) < 0.02
    assert 4 <= swapped.sum() <= 20                                            # a short stretch


def test_low_level_statistics_lie_in_the_range_of_real_recordings(dataset):
    """Jitter at the wrist and the spine, wrist speed and clip lengths, measured as on real NTU files
    (hacm.data.skeleton_stats), fall in the range of the real references (docs/synthetic.md has the
    table; the bone-length spread across performers needs more performers than this fixture has)."""
    from hacm.data.skeleton_stats import compute_stats, read_raw_dir

    stats = compute_stats(read_raw_dir(dataset[0], progress=False))
    assert 3.0 < stats.jitter_mm["wrist"] < 15.0 and 0.3 < stats.jitter_mm["spine_mid"] < 3.5, stats.jitter_mm
    assert 0.1 < stats.speed["wrist"][0] < 0.4, stats.speed                  # real: 0.2 m/s median
    assert 40 <= stats.length[1] <= 110 and stats.length[0] >= 20, stats.length


def test_drift_makes_bone_lengths_breathe_within_a_clip():
    """sensor.drift_mm: a slow error of each joint's estimate, what makes real bone lengths vary by
    several per cent within a clip (real NTU forearm: about 11 %), without adding frame-to-frame jitter."""
    still = np.broadcast_to(_clean("nod", 1, variation=STILL)[0, :1], (300, NUM_JOINTS, 3)).copy()   # one pose
    elbow, wrist = JOINT_NAMES.index("left_elbow"), JOINT_NAMES.index("left_wrist")

    def forearm_cv(sensor):
        xyz = still + synth.sensor_noise(still + [0, 0, 3.0], np.random.default_rng(0), sensor)
        length = np.linalg.norm(xyz[:, wrist] - xyz[:, elbow], axis=-1)
        return length.std() / length.mean()

    assert forearm_cv(SensorModel(drift_mm=6.0)) > 3 * forearm_cv(SensorModel(drift_mm=0.0))


def test_coupling_moves_the_free_joints_with_the_driven_ones():
    """variation.coupling: the body moves as a whole. Raising one arm turns the torso and bends the
    elbow a little, a few frames late; without coupling those joints stay where the posture put them."""
    subject = make_subject(0, 1, population=Population(left_handed=0.0))
    spec = ACTIONS[NAMES.index("raise arm")]

    def torso_turn(gain):
        xyz = generate_sequence(spec, [subject], np.random.default_rng(0),
                                variation=Variation(fidgets=0.0, bystander_prob=0.0, coupling=gain)).xyz[0]
        shoulders = xyz[:, JOINT_NAMES.index("left_shoulder")] - xyz[:, JOINT_NAMES.index("right_shoulder")]
        yaw = np.arctan2(shoulders[:, 2], shoulders[:, 0])            # the shoulder line about the vertical
        return np.ptp(yaw)

    assert torso_turn(0.0) < 0.02 and torso_turn(1.0) > 0.1, (torso_turn(0.0), torso_turn(1.0))
