"""The standard NTU denoising and centring (docs/data.md, "The standard preprocessing").

This follows the scripts MAMP and HA-CM consume (get_raw_denoised_data.py and
seq_transformation.py of the NTU preprocessing). Frames with 0 bodies have already been removed
by the parser, so all frame indices here count only frames that hold a body.

  (a) multi-body samples only: drop bodies tracked for <= 11 frames;
  (b) while more than one body remains, visit bodies in order of first appearance: a frame is
      noisy for a body if its joints' x-extent > 0.8 * y-extent; drop the body if its
      noisy-frame ratio >= 0.69754. A body that stays but has noisy frames gets
      motion = min(motion, motion over its non-noisy frames), as in the original scripts;
  (c) sort remaining bodies by motion (sum over x, y, z of the variance of the joint
      coordinates over all its frames and joints), largest first (stable for ties);
  (d) actor 1 = the largest; each next body goes into actor 1's slot if its frame span does not
      share a frame with actor 1's span [first, last], else into actor 2's slot under the same
      rule, else it is dropped;
  (e) multi-body samples: drop frames where every kept actor is all zeros.

Where the original scripts have accidents, the rule above is what docs/data.md states instead:
two spans that share exactly one frame count as overlapping (the scripts let the later body
overwrite that frame), and an empty actor-2 slot accepts any body (the scripts start it as the
virtual span [0, 0], which then stretches actor 2's span back to frame 0).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from hacm.data.raw_ntu import RawBody, RawSkeleton
from hacm.skeleton import CENTRE_JOINT, NUM_JOINTS

MIN_BODY_FRAMES = 12            # (a): bodies tracked for <= 11 frames are noise
SPREAD_RATIO = 0.8              # (b): noisy frame if x-extent > 0.8 * y-extent
NOISY_FRAME_RATIO = 0.69754     # (b): drop a body with at least this share of noisy frames


@dataclass
class DenoiseResult:
    frames: np.ndarray                  # [A, T, 25, 3] float32, A in (1, 2); zeros where an actor is absent
    actors: list[list[str]]             # body ids merged into each actor slot
    dropped_bodies: list[tuple[str, str]] = field(default_factory=list)   # (body id, reason)
    dropped_frames: list[int] = field(default_factory=list)  # (e): indices into the parser's frames


def body_motion(joints: np.ndarray) -> float:
    """Sum over x, y, z of the variance over all frames and joints; joints [n, 25, 3]."""
    return float(np.var(joints.reshape(-1, 3), axis=0, dtype=np.float64).sum())


def noisy_frames(joints: np.ndarray) -> np.ndarray:
    """[n] bool: frames whose x-extent exceeds 0.8 * y-extent (a sideways or broken skeleton)."""
    extent = joints.max(axis=1) - joints.min(axis=1)          # [n, 3]
    return extent[:, 0] > SPREAD_RATIO * extent[:, 1]


def _assign_slots(ordered: list[RawBody]) -> tuple[list[list[RawBody]], list[RawBody]]:
    """(d): actor slots by non-overlapping frame spans; returns (slots, dropped bodies)."""
    slots: list[list[RawBody]] = [[ordered[0]]]
    spans = [[int(ordered[0].frames[0]), int(ordered[0].frames[-1])]]
    dropped = []
    for body in ordered[1:]:
        start, end = int(body.frames[0]), int(body.frames[-1])
        for slot in range(2):
            if slot == len(slots):                   # empty actor-2 slot takes the body
                slots.append([body])
                spans.append([start, end])
                break
            s, e = spans[slot]
            if end < s or start > e:                 # no shared frame
                slots[slot].append(body)
                spans[slot] = [min(s, start), max(e, end)]
                break
        else:
            dropped.append(body)
    return slots, dropped


def denoise(raw: RawSkeleton) -> DenoiseResult:
    """Select at most two actors from the tracked bodies of one sample. Frames are not centred.

    Returns A = 0 actors (frames [0, T, 25, 3]) when nothing survives; the caller decides.
    """
    bodies = list(raw.bodies)
    dropped: list[tuple[str, str]] = []
    motion = {b.body_id: body_motion(b.joints) for b in bodies}
    multi = len(bodies) > 1
    if multi:
        keep = []
        for b in bodies:                                              # (a)
            if len(b.frames) < MIN_BODY_FRAMES:
                dropped.append((b.body_id, f"too_short ({len(b.frames)} frames)"))
            else:
                keep.append(b)
        bodies = keep
        for b in list(bodies):                                        # (b)
            if len(bodies) == 1:
                break
            noisy = noisy_frames(b.joints)
            if not noisy.any():
                continue
            ratio = float(noisy.mean())
            if ratio >= NOISY_FRAME_RATIO:
                bodies.remove(b)
                dropped.append((b.body_id, f"spread (noisy-frame ratio {ratio:.3f})"))
            else:
                motion[b.body_id] = min(motion[b.body_id], body_motion(b.joints[~noisy]))
    if not bodies:
        return DenoiseResult(np.zeros((0, raw.num_frames, NUM_JOINTS, 3), np.float32), [], dropped)

    ordered = sorted(bodies, key=lambda b: motion[b.body_id], reverse=True)   # (c)
    slots, overlapping = _assign_slots(ordered)                                # (d)
    dropped += [(b.body_id, "overlaps both actors") for b in overlapping]

    frames = np.zeros((len(slots), raw.num_frames, NUM_JOINTS, 3), dtype=np.float32)
    for a, slot in enumerate(slots):
        for b in slot:
            frames[a, b.frames] = b.joints
    removed: list[int] = []
    if multi:                                                                  # (e)
        present = frames.reshape(len(slots), raw.num_frames, -1).any(axis=2).any(axis=0)   # [T]
        removed = np.flatnonzero(~present).tolist()
        frames = frames[:, present]
    return DenoiseResult(frames, [[b.body_id for b in slot] for slot in slots], dropped, removed)


def centre(frames: np.ndarray) -> np.ndarray:
    """Step 3: subtract actor 1's spine-mid joint in its first present frame; frames [A, T, 25, 3].

    An actor's frame counts as absent when it is all zeros; absent frames stay exactly zero.
    Returns a new float32 array.
    """
    frames = np.asarray(frames, dtype=np.float32)
    present = frames.reshape(frames.shape[0], frames.shape[1], -1).any(axis=2)      # [A, T]
    if not present[0].any():
        return frames.copy()
    origin = frames[0, int(np.argmax(present[0])), CENTRE_JOINT]                    # [3]
    return np.where(present[:, :, None, None], frames - origin, np.float32(0))
