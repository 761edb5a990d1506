"""Denoising rules (a)-(e) and centring, on hand-built samples with known answers."""
import numpy as np

from hacm.data.denoise import NOISY_FRAME_RATIO, body_motion, centre, denoise, noisy_frames
from hacm.data.raw_ntu import RawBody, RawSkeleton
from hacm.skeleton import CENTRE_JOINT
from ntu_files import person


def body(body_id, frames, make=lambda f: person(), ) -> RawBody:
    frames = np.asarray(list(frames))
    return RawBody(str(body_id), frames, np.stack([make(f) for f in frames]).astype(np.float32))


def raw(*bodies, num_frames=None) -> RawSkeleton:
    n = num_frames or max(int(b.frames[-1]) for b in bodies) + 1
    return RawSkeleton("x.skeleton", n, n, [], list(bodies))


def moving(speed, x0=0.0):
    return lambda f: person(x0 + speed * f)


def test_single_body_is_never_denoised():
    result = denoise(raw(body(1, range(5))))                  # 5 frames would fail rule (a)
    assert result.frames.shape == (1, 5, 25, 3) and result.dropped_bodies == []


def test_a_short_bodies_are_dropped():
    result = denoise(raw(body(1, range(20)), body(2, range(11)), body(3, range(12), moving(0.0, 1.0))))
    assert result.dropped_bodies == [("2", "too_short (11 frames)")]
    assert result.actors == [["1"], ["3"]]                    # 12 frames is enough


def test_a_everything_short_leaves_nothing():
    result = denoise(raw(body(1, range(11)), body(2, range(3))))
    assert result.frames.shape[0] == 0 and len(result.dropped_bodies) == 2


def wide_in(noisy):
    return lambda f: person(width=2.0, height=1.0) if f in noisy else person()


def test_b_spread_ratio_threshold():
    assert noisy_frames(person(width=2.0, height=1.0)[None]).tolist() == [True]
    assert noisy_frames(person()[None]).tolist() == [False]
    # 14 of 20 frames noisy: 0.70 >= 0.69754 -> dropped; 13 of 20: 0.65 -> kept
    dropped = denoise(raw(body(1, range(20), moving(0.1)), body(2, range(20), wide_in(set(range(14))))))
    assert dropped.actors == [["1"]] and dropped.dropped_bodies[0][0] == "2"
    assert "spread" in dropped.dropped_bodies[0][1] and 14 / 20 >= NOISY_FRAME_RATIO
    kept = denoise(raw(body(1, range(20), moving(0.1)), body(2, range(20), wide_in(set(range(13))))))
    assert kept.actors == [["1"], ["2"]]


def test_b_only_while_more_than_one_body_remains():
    all_noisy = wide_in(set(range(20)))
    result = denoise(raw(body(1, range(20), all_noisy), body(2, range(20), all_noisy)))
    assert result.actors == [["2"]]                           # 1 is dropped, then 2 is alone and stays
    assert [b for b, _ in result.dropped_bodies] == ["1"]


def test_b_partly_noisy_body_motion_uses_clean_frames():
    # Body 2 moves a lot only in its noisy frames: its motion becomes the clean-frame motion,
    # which is below body 1's, so body 1 is actor 1 (the raw motion would say otherwise).
    b1 = body(1, range(20), moving(0.05))
    b2 = body(2, range(20), lambda f: person(3.0 * f, width=2.0, height=1.0) if f < 5 else person())
    assert body_motion(b2.joints) > body_motion(b1.joints) > body_motion(b2.joints[5:])
    assert denoise(raw(b1, b2)).actors == [["1"], ["2"]]


def test_c_d_motion_order_and_slots():
    still = body(1, range(20))                                # smallest motion
    fast = body(2, range(20), moving(0.2))                    # actor 1
    medium = body(3, range(20), moving(0.1, 1.0))             # overlaps actor 1 -> actor 2
    later = body(4, range(20, 40), moving(0.05))              # no overlap with actor 1 -> actor 1's slot
    result = denoise(raw(still, fast, medium, later))
    assert result.actors == [["2", "4"], ["3"]]
    assert result.dropped_bodies == [("1", "overlaps both actors")]
    np.testing.assert_array_equal(result.frames[0, :20], fast.joints)
    np.testing.assert_array_equal(result.frames[0, 20:], later.joints)
    assert not result.frames[1, 20:].any()                    # actor 2 absent there: zeros


def test_d_spans_sharing_one_frame_overlap():
    result = denoise(raw(body(1, range(20), moving(0.2)), body(2, range(19, 40))))
    assert result.actors == [["1"], ["2"]]


def test_e_frames_without_kept_actors_are_dropped():
    a = body(1, range(20), moving(0.2))
    b = body(2, range(20), moving(0.1, 1.0))
    c = body(3, range(10, 30))                                # overlaps both, dropped: frames 20-29 empty
    result = denoise(raw(a, b, c))
    assert result.frames.shape == (2, 20, 25, 3)
    assert result.dropped_frames == list(range(20, 30))


def test_centre():
    frames = np.zeros((2, 4, 25, 3), np.float32)
    frames[0, 2:] = person(1.0, 2.0, 3.0)                      # actor 1 present from frame 2
    frames[1, 1:] = person(5.0)
    origin = frames[0, 2, CENTRE_JOINT].copy()
    out = centre(frames)
    np.testing.assert_array_equal(out[0, :2], 0)               # absent frames stay exactly zero
    np.testing.assert_array_equal(out[1, 0], 0)
    np.testing.assert_allclose(out[0, 2, CENTRE_JOINT], 0, atol=1e-6)
    np.testing.assert_allclose(out[1, 1:], frames[1, 1:] - origin, atol=1e-6)
    assert out.dtype == np.float32 and frames[0, 2, 0, 0] != 0  # input untouched
