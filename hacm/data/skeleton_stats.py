"""Low-level statistics of recorded skeletons: the instrument that holds synthetic data against real.

A clip here is actor 1's joints [T, 25, 3] in metres, as the standard denoising selects it
(hacm.data.denoise), with its performer id. Frames where actor 1 is absent are all zeros (a
tracking loss inside a two-person clip) and never enter a difference. The statistics:

  bone lengths    per performer the median over all its frames of each named segment (left and
                  right pooled), then across performers the coefficient of variation
                  (sample sd / mean): how much body size differs between people. Also the
                  within-clip CV (sd / mean over the frames of one clip, median over clips):
                  a real sensor's bones stretch from frame to frame, a rigid model's do not.
  jitter          median over all consecutive frame pairs of |x[t+1] - x[t]| (mm) at the
                  wrists and at the spine mid; motion and sensor noise together.
  second diff.    median |x[t+1] - 2 x[t] + x[t-1]| (mm) at the same joints. Smooth motion
                  has almost none at 30 fps, white noise has much: its ratio to the jitter is
                  sqrt(3) = 1.73 for pure white noise and near 0 for pure smooth motion, so
                  the ratio ("roughness") says how much of the jitter is sensor noise.
  speeds          median and 90th percentile of |x[t+w] - x[t]| * fps / w for wrists and feet
                  (m/s), over w = SPEED_WINDOW frames so that sensor noise does not pass as speed.
  clip lengths    frames of actor 1's clip after denoising (what a store keeps), 30 fps.
  recording       share of frames with 0 bodies and of files with more than one tracked body
                  (raw files only), of clips with a second actor, of actor-1 frames lost inside
                  a clip, of "noisy" frames (x-extent > 0.8 y-extent, the denoising's test for
                  a sideways or broken skeleton), and the median camera distance of the spine
                  mid (raw files only: a store is centred).

Everything but the camera distance is translation invariant, so a raw directory and the store
converted from it give the same numbers (tested). Real reference values, measured on public
sample files and taken from publications, are in REFERENCE with their sources.
numpy only: this module must stay importable without torch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from hacm.data.denoise import denoise, noisy_frames
from hacm.data.raw_ntu import parse_sample_name, parse_skeleton_file
from hacm.errors import HacmError
from hacm.skeleton import CENTRE_JOINT, JOINT_NAMES, NUM_JOINTS

FPS = 30.0              # NTU RGB+D and PKU-MMD record at 30 frames per second (Kinect v2)
BOOTSTRAP_REPS = 2000   # resamples of the performers for the interval of a bone-length CV
SPEED_WINDOW = 5        # frames (1/6 s) over which a speed is measured; see the module docstring


def _j(name: str) -> int:
    return JOINT_NAMES.index(name)


# Named segments, each a tuple of (joint, joint) pairs whose distances are pooled (left and right).
# Not all are bones of the kinematic tree: the spine is measured straight from its base to the
# spine shoulder, the widths across the body, because that is what anthropometry reports.
SEGMENTS: dict[str, tuple[tuple[int, int], ...]] = {
    "upper_arm": ((_j("left_shoulder"), _j("left_elbow")), (_j("right_shoulder"), _j("right_elbow"))),
    "forearm": ((_j("left_elbow"), _j("left_wrist")), (_j("right_elbow"), _j("right_wrist"))),
    "thigh": ((_j("left_hip"), _j("left_knee")), (_j("right_hip"), _j("right_knee"))),
    "shin": ((_j("left_knee"), _j("left_ankle")), (_j("right_knee"), _j("right_ankle"))),
    "spine": ((_j("spine_base"), _j("spine_shoulder")),),
    "neck_head": ((_j("spine_shoulder"), _j("head")),),
    "shoulder_width": ((_j("left_shoulder"), _j("right_shoulder")),),
    "hip_width": ((_j("left_hip"), _j("right_hip")),),
}
WRISTS = (_j("left_wrist"), _j("right_wrist"))
FEET = (_j("left_foot"), _j("right_foot"))
SPINE_MID = (CENTRE_JOINT,)


@dataclass
class Clip:
    name: str
    performer: int
    joints: np.ndarray          # [T, 25, 3] actor 1 in metres; all-zero rows: actor 1 absent


@dataclass
class SkeletonSet:
    """Clips of one source plus what only raw files tell (None for a store)."""
    source: str
    clips: list[Clip]
    files: int                                  # files read (raw) or samples (store)
    total_frames: int | None = None             # raw: frames declared on line 1, summed
    empty_frames: int | None = None             # raw: frames with 0 bodies
    files_multi_body: int | None = None         # raw: files with more than one tracked body id
    two_actor_clips: int = 0                    # clips with a second actor after denoising
    centred: bool = False                       # True for a store: camera distance is unknown


@dataclass
class SkeletonStats:
    """The statistics of one SkeletonSet; None where the source cannot tell (see SkeletonSet)."""
    source: str
    clips: int
    performers: int
    bone_cv: dict[str, float | None]            # % across performers
    bone_cv_ci: dict[str, tuple[float, float] | None]   # 95 % bootstrap interval over performers
    bone_median: dict[str, float]               # m, median over performers
    bone_within_clip_cv: dict[str, float]       # %, median over clips and sides
    jitter_mm: dict[str, float]                 # "wrist", "spine_mid": median |x[t+1] - x[t]|
    second_diff_mm: dict[str, float]            # same joints: median |x[t+1] - 2x[t] + x[t-1]|
    roughness: dict[str, float]                 # second_diff / jitter (white noise: sqrt(3))
    speed: dict[str, tuple[float, float]]       # "wrist", "foot": (median, 90th percentile) m/s
    length: tuple[int, float, float, int]       # clip frames (min, median, mean, max)
    empty_frame_share: float | None
    multi_body_file_share: float | None
    two_actor_share: float
    lost_frame_share: float                     # actor-1 frames absent inside its clip
    noisy_frame_share: float
    depth_m: float | None                       # median camera distance (z) of the spine mid

    def rows(self) -> list[tuple[str, float | None]]:
        """(key, value) for the table; keys match REFERENCE."""
        out: list[tuple[str, float | None]] = [("clips", self.clips), ("performers", self.performers)]
        out += [(f"bone_cv.{k}", v) for k, v in self.bone_cv.items()]
        out += [(f"bone_median.{k}", v) for k, v in self.bone_median.items()]
        out += [(f"bone_within_clip_cv.{k}", v) for k, v in self.bone_within_clip_cv.items()]
        for name in ("jitter_mm", "second_diff_mm", "roughness"):
            out += [(f"{name}.{k}", v) for k, v in getattr(self, name).items()]
        for k, (median, p90) in self.speed.items():
            out += [(f"speed.{k}.median", median), (f"speed.{k}.p90", p90)]
        out += [(f"length.{k}", v) for k, v in zip(("min", "median", "mean", "max"), self.length)]
        out += [(f.name, getattr(self, f.name)) for f in fields(self)
                if f.name in ("empty_frame_share", "multi_body_file_share", "two_actor_share",
                              "lost_frame_share", "noisy_frame_share", "depth_m")]
        return out


# ---------------------------------------------------------------- reading

def read_raw_dir(raw_dir, *, progress: bool = True) -> SkeletonSet:
    """Actor-1 clips of every `.skeleton` file in `raw_dir`, denoised as the conversion does.

    Unlike the conversion, short clips are kept: this describes the recordings. A file whose
    name or contents are malformed raises FormatError naming the file (and line).
    """
    from hacm.progress import progress_bar

    raw_dir = Path(raw_dir)
    paths = sorted(raw_dir.glob("*.skeleton"))
    if not paths:
        raise HacmError(f"{raw_dir}: no .skeleton files found (expected a directory of raw NTU "
                        f"files named like S001C002P003R002A013.skeleton, or a hacm store)")
    clips, declared, empty, multi, two = [], 0, 0, 0, 0
    for path in progress_bar(paths, desc=f"read {raw_dir.name}", unit="file", disable=not progress):
        ids = parse_sample_name(path.name)
        raw = parse_skeleton_file(path)
        declared += raw.declared_frames
        empty += len(raw.empty_frames)
        multi += len(raw.bodies) > 1
        if not raw.bodies:
            continue
        frames = denoise(raw).frames                # [A, T, 25, 3]
        if frames.shape[0] == 0 or frames.shape[1] == 0:
            continue
        two += frames.shape[0] > 1
        clips.append(Clip(ids["name"], ids["performer"], frames[0]))
    return SkeletonSet(str(raw_dir), clips, len(paths), declared, empty, multi, two, centred=False)


def read_store(store_dir, *, progress: bool = True) -> SkeletonSet:
    """Actor-1 clips of every sample of a hacm store (centred, so no camera distance)."""
    from hacm.progress import progress_bar

    from hacm.data.store import Store

    store = Store.open(store_dir)
    clips = [Clip(str(store.names[i]), int(store.performer[i]), np.asarray(store.frames(i)[0]))
             for i in progress_bar(range(len(store)), desc=f"read {Path(store_dir).name}", unit="clip",
                           disable=not progress)]
    return SkeletonSet(str(store_dir), clips, len(store), two_actor_clips=int((store.num_actors == 2).sum()),
                       centred=True)


def read_skeletons(path, *, progress: bool = True) -> SkeletonSet:
    """A store (a directory with meta.json) or a directory of raw `.skeleton` files."""
    from hacm.data.store import META_FILE

    path = Path(path)
    if not path.is_dir():
        raise HacmError(f"{path}: no such directory (expected raw .skeleton files or a hacm store)")
    if (path / META_FILE).is_file():
        return read_store(path, progress=progress)
    return read_raw_dir(path, progress=progress)


# ---------------------------------------------------------------- statistics

def _present(joints: np.ndarray) -> np.ndarray:
    """[T] bool: frames where actor 1 was tracked (not all zeros)."""
    return joints.reshape(joints.shape[0], -1).any(axis=1)


def segment_lengths(joints: np.ndarray, segment: str) -> np.ndarray:
    """[T, sides] lengths (m) of a named segment in every frame of joints [T, 25, 3]."""
    pairs = np.array(SEGMENTS[segment])
    return np.linalg.norm(joints[:, pairs[:, 0]] - joints[:, pairs[:, 1]], axis=-1)


def coefficient_of_variation(values) -> float | None:
    """Sample sd / mean in %, None for fewer than two values."""
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return None
    return float(100.0 * values.std(ddof=1) / values.mean())


def bootstrap_cv_interval(values, *, reps: int = BOOTSTRAP_REPS, seed: int = 0,
                          level: float = 0.95) -> tuple[float, float] | None:
    """Percentile bootstrap interval (%) of the CV of `values`, resampling the values (performers).

    None for fewer than three values: with two, a resample is too often one value twice. With a
    handful of performers the interval leans low (a resample repeats people, which shrinks the
    spread); it says how little a few performers pin the CV down, not where it lies exactly.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.size < 3:
        return None
    rng = np.random.default_rng(seed)
    samples = values[rng.integers(0, values.size, size=(reps, values.size))]      # [reps, n]
    cvs = 100.0 * samples.std(axis=1, ddof=1) / samples.mean(axis=1)
    tail = 100.0 * (1.0 - level) / 2.0
    return float(np.percentile(cvs, tail)), float(np.percentile(cvs, 100.0 - tail))


def performer_segment_lengths(clips: list[Clip]) -> dict[str, dict[int, float]]:
    """segment -> performer -> median length (m) over all of that performer's tracked frames."""
    out: dict[str, dict[int, float]] = {}
    for segment in SEGMENTS:
        pooled: dict[int, list[np.ndarray]] = {}
        for clip in clips:
            present = clip.joints[_present(clip.joints)]
            pooled.setdefault(clip.performer, []).append(segment_lengths(present, segment).ravel())
        out[segment] = {p: float(np.median(np.concatenate(v))) for p, v in pooled.items()
                        if sum(x.size for x in v)}
    return out


def _tracked_runs(clip: Clip) -> list[np.ndarray]:
    """Runs of consecutive tracked frames of a clip, float64 [n, 25, 3] each.

    Differences are taken within runs only: a jump across a tracking loss is not motion.
    """
    present = _present(clip.joints).astype(np.int8)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], present, [0]))))
    return [clip.joints[start:stop].astype(np.float64) for start, stop in zip(edges[::2], edges[1::2])]


def _differences(runs: list[np.ndarray], order: int) -> list[np.ndarray]:
    """Frame differences of the given order (1: velocity, 2: acceleration, in m per frame^order)."""
    return [np.diff(run, n=order, axis=0) for run in runs if run.shape[0] > order]


def _displacements(runs: list[np.ndarray], window: int) -> list[np.ndarray]:
    """x[t + window] - x[t] within runs."""
    return [run[window:] - run[:-window] for run in runs if run.shape[0] > window]


def _norms_at(diffs: list[np.ndarray], joints: tuple[int, ...]) -> np.ndarray:
    """|difference| at the given joints, pooled over runs and joints."""
    if not diffs:
        return np.zeros(0)
    return np.concatenate([np.linalg.norm(d[:, list(joints)], axis=-1).ravel() for d in diffs])


def _median(x: np.ndarray) -> float:
    return float(np.median(x)) if x.size else math.nan


def compute_stats(data: SkeletonSet, *, fps: float = FPS, speed_window: int = SPEED_WINDOW) -> SkeletonStats:
    """Every statistic of the module docstring for one SkeletonSet."""
    clips = data.clips
    if not clips:
        raise HacmError(f"{data.source}: no clip with a tracked actor to measure")
    for clip in clips:
        if clip.joints.ndim != 3 or clip.joints.shape[1:] != (NUM_JOINTS, 3):
            raise HacmError(f"{data.source}: clip {clip.name}: expected joints [T, {NUM_JOINTS}, 3], "
                            f"got {list(clip.joints.shape)}")
    per_performer = performer_segment_lengths(clips)
    bone_cv = {s: coefficient_of_variation(list(v.values())) for s, v in per_performer.items()}
    bone_cv_ci = {s: bootstrap_cv_interval(list(v.values())) for s, v in per_performer.items()}
    bone_median = {s: _median(np.array(list(v.values()))) for s, v in per_performer.items()}
    within = {}
    for segment in SEGMENTS:
        cvs = []
        for clip in clips:
            lengths = segment_lengths(clip.joints[_present(clip.joints)], segment)    # [T, sides]
            if lengths.shape[0] >= 2:
                cvs += (100.0 * lengths.std(axis=0, ddof=1) / lengths.mean(axis=0)).tolist()
        within[segment] = _median(np.array(cvs))

    runs = [run for c in clips for run in _tracked_runs(c)]
    first, second, moved = _differences(runs, 1), _differences(runs, 2), _displacements(runs, speed_window)
    jitter = {name: 1000.0 * _median(_norms_at(first, js)) for name, js in (("wrist", WRISTS), ("spine_mid", SPINE_MID))}
    second_diff = {name: 1000.0 * _median(_norms_at(second, js)) for name, js in (("wrist", WRISTS), ("spine_mid", SPINE_MID))}
    roughness = {k: second_diff[k] / jitter[k] if jitter[k] > 0 else math.nan for k in jitter}
    speed = {}
    for name, js in (("wrist", WRISTS), ("foot", FEET)):
        v = _norms_at(moved, js) * fps / speed_window
        speed[name] = (_median(v), float(np.percentile(v, 90)) if v.size else math.nan)

    lengths = np.array([c.joints.shape[0] for c in clips])
    present = [_present(c.joints) for c in clips]
    tracked = np.concatenate([c.joints[p] for c, p in zip(clips, present)])             # [N, 25, 3]
    return SkeletonStats(
        source=data.source, clips=len(clips), performers=len({c.performer for c in clips}),
        bone_cv=bone_cv, bone_cv_ci=bone_cv_ci, bone_median=bone_median, bone_within_clip_cv=within,
        jitter_mm=jitter, second_diff_mm=second_diff, roughness=roughness, speed=speed,
        length=(int(lengths.min()), float(np.median(lengths)), float(lengths.mean()), int(lengths.max())),
        empty_frame_share=(data.empty_frames / data.total_frames if data.total_frames else None),
        multi_body_file_share=(data.files_multi_body / data.files if data.files_multi_body is not None else None),
        two_actor_share=data.two_actor_clips / len(clips),
        lost_frame_share=float(1.0 - np.concatenate(present).mean()),
        noisy_frame_share=float(noisy_frames(tracked).mean()),
        depth_m=None if data.centred else float(np.median(tracked[:, CENTRE_JOINT, 2])),
    )


# ---------------------------------------------------------------- real reference values

@dataclass(frozen=True)
class Reference:
    value: float
    source: str                 # where the number comes from
    n: str                      # what it was measured on


_NTU_FULL = ("5 NTU RGB+D 60 sample files shipped by the public repository "
             "LevelCA/NTU-RGB-D-skeleton-dataset-visualization, measured with this module")
_NTU_FULL_N = "5 clips, 4 performers, 1 two-person"
_NTU_BONES = (_NTU_FULL + ", plus the first frames (3 of them) of 5 further performers' files from "
              "tdinzju/skeleton_data")
_NTU_BONES_N = "9 performers, setups 1-4"
_ISSUE = "hacm issue 14, PKU-MMD phase I measured by the issue's author (definitions may differ)"
_ISSUE_N = "1,772 clips"
_NTU_PAPER = "NTU RGB+D (Shahroudy et al., CVPR 2016): 56,880 samples, 4 million frames"


def _ntu(value: float, n: str = _NTU_FULL_N) -> tuple[Reference, ...]:
    return (Reference(value, _NTU_FULL, n),)


# Real reference values: measured on public sample files (on a developer machine; the files are
# never committed, their licence forbids redistribution) and taken from publications. Keys are
# those of SkeletonStats.rows(). A handful of clips is little: treat these as the scale a
# generator should land on, not as a target to a decimal.
REFERENCE: dict[str, tuple[Reference, ...]] = {
    "bone_cv.upper_arm": (Reference(13.4, _NTU_BONES, _NTU_BONES_N), Reference(10.5, _ISSUE, _ISSUE_N)),
    **{f"bone_cv.{k}": (Reference(v, _NTU_BONES, _NTU_BONES_N),) for k, v in {
        "forearm": 9.1, "thigh": 15.7, "shin": 11.4, "spine": 9.1,
        "neck_head": 10.7, "shoulder_width": 11.2, "hip_width": 12.3}.items()},
    **{f"bone_median.{k}": (Reference(v, _NTU_BONES, _NTU_BONES_N),) for k, v in {
        "upper_arm": 0.232, "forearm": 0.222, "thigh": 0.337, "shin": 0.344, "spine": 0.479,
        "neck_head": 0.193, "shoulder_width": 0.329, "hip_width": 0.117}.items()},
    **{f"bone_within_clip_cv.{k}": _ntu(v) for k, v in {
        "upper_arm": 6.2, "forearm": 10.8, "thigh": 3.5, "shin": 3.9, "spine": 2.2,
        "neck_head": 1.7, "shoulder_width": 5.5, "hip_width": 4.5}.items()},
    "jitter_mm.wrist": (*_ntu(7.3), Reference(10.6, _ISSUE, _ISSUE_N)),
    "jitter_mm.spine_mid": (*_ntu(0.9), Reference(2.5, _ISSUE, _ISSUE_N)),
    "second_diff_mm.wrist": _ntu(13.2),
    "second_diff_mm.spine_mid": _ntu(0.94),
    "roughness.wrist": _ntu(1.81),
    "roughness.spine_mid": _ntu(1.04),
    "speed.wrist.median": _ntu(0.20),
    "speed.wrist.p90": _ntu(0.71),
    "speed.foot.median": _ntu(0.05),
    "speed.foot.p90": _ntu(0.55),
    "length.min": (*_ntu(70), Reference(21, _ISSUE, _ISSUE_N)),
    "length.median": _ntu(82),
    "length.mean": (Reference(70.3, _NTU_PAPER + " (4,000,000 / 56,880)", "56,880 samples"),),
    "length.max": (*_ntu(124), Reference(263, _ISSUE, _ISSUE_N)),
    "empty_frame_share": _ntu(0.0),
    "multi_body_file_share": _ntu(0.2),
    "lost_frame_share": _ntu(0.0),
    "noisy_frame_share": _ntu(0.0),
    "depth_m": _ntu(3.04),
}


# ---------------------------------------------------------------- the table

def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, np.integer)) or float(value).is_integer() and abs(value) >= 10:
        return f"{int(value):,}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.1f}"


def _with_interval(stats: SkeletonStats, key: str) -> str:
    """The cell of `key`, with the bootstrap interval after a bone-length CV."""
    cell = _cell(dict(stats.rows())[key])
    if key.startswith("bone_cv."):
        ci = stats.bone_cv_ci[key.split(".", 1)[1]]
        if ci is not None:
            cell += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    return cell


def stats_table(stats: list[SkeletonStats], reference: dict[str, tuple[Reference, ...]] = REFERENCE,
                names: list[str] | None = None) -> str:
    """A plain-text table: one row per statistic, one column per source, then the references.

    The reference columns are numbered; their sources are listed under the table. A bone-length
    CV carries its 95 % bootstrap interval over performers in brackets.
    """
    names = names or [Path(s.source).name or s.source for s in stats]
    keys = [k for k, _ in stats[0].rows()]
    sources = list(dict.fromkeys(r.source for refs in reference.values() for r in refs))
    header = ["statistic", *names, *(f"ref [{i + 1}]" for i in range(len(sources)))]
    body = []
    for key in keys:
        refs = {sources.index(r.source): r.value for r in reference.get(key, ())}
        body.append([key, *(_with_interval(s, key) for s in stats),
                     *(_cell(refs.get(i)) for i in range(len(sources)))])
    widths = [max(len(row[c]) for row in [header, *body]) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(row, widths)))
             for row in [header, *body]]
    ns = {r.source: r.n for refs in reference.values() for r in refs}
    lines += [""] + [f"[{i + 1}] {src} ({ns[src]})" for i, src in enumerate(sources)]
    return "\n".join(lines)
