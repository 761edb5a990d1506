"""Parser for NTU RGB+D raw `.skeleton` files (layout in docs/data.md).

Speed matters: NTU-120 is 114,480 files of a few hundred KB, and a Python loop that calls
float() on every field manages about 160 files/s. Here the file is read once and
  1. field starts and newlines are found by one numpy pass over the raw bytes (`_Lines`),
  2. the structure (frame headers, body lines, joint counts, field counts) is checked with a
     handful of array comparisons against the layout the headers imply (`_layout_fast`),
  3. only the x, y, z fields of the joint lines are converted, by a vectorised decimal parser
     that reads each token as two 64-bit words (`_parse_decimals`); it is bit-identical to
     float32(float(token)), which is also what numpy's bytes -> float32 cast gives. Tokens it
     does not handle (exponents, nan, more than 15 characters) go through float() one by one.
The 9 other joint fields are counted, not converted: hacm does not use them.
Everything that can be wrong is still reported precisely: when the fast check fails, the
line-by-line walk (`_layout_walk`) finds the first wrong line, and the message names the file,
the 1-based line and what was expected.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hacm.errors import FormatError
from hacm.skeleton import NUM_JOINTS

BODY_FIELDS = 10    # bodyID clippedEdges handLeftConfidence ... trackingState
JOINT_FIELDS = 12   # x y z depthX depthY colorX colorY orientationW..Z trackingState
XYZ = ("x", "y", "z")

_NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")


def parse_sample_name(name: str) -> dict:
    """"S001C002P003R002A013" (a path or ".skeleton" suffix is allowed) -> 1-based ids."""
    stem = Path(name).name.split(".")[0]
    m = _NAME_RE.fullmatch(stem)
    if m is None:
        raise FormatError(name, None, "file name: expected SsssCcccPpppRrrrAaaa (e.g. "
                                      "S001C002P003R002A013.skeleton)")
    setup, camera, performer, replication, action = (int(g) for g in m.groups())
    return {"name": stem, "setup": setup, "camera": camera, "performer": performer,
            "replication": replication, "action": action}


@dataclass
class RawBody:
    body_id: str
    frames: np.ndarray   # [n] int64, indices into RawSkeleton's kept frames (0-body frames removed)
    joints: np.ndarray   # [n, 25, 3] float32, x y z in metres


@dataclass
class RawSkeleton:
    path: str
    num_frames: int                       # frames with at least one body
    declared_frames: int                  # line 1 of the file
    empty_frames: list[int] = field(default_factory=list)   # 0-based file frames with 0 bodies (dropped)
    bodies: list[RawBody] = field(default_factory=list)     # in order of first appearance


def _line_marks(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Field starts and newlines of the bytes `buf`, found by one pass.

    A field separator is any byte <= 32 (space, tab, CR, LF and other controls); a trailing
    newline does not open a new line. Returns (marks [N + newlines] byte offsets of every field
    start and newline, in order; ends [L] index into marks of each line's newline, or marks.size
    for a last line without one; line_end [L] byte offset where each line ends). Within a line
    the fields are consecutive entries of marks, so no per-line search is needed.
    """
    # Two byte-sized temporaries only: this runs on every byte of every file.
    space = buf <= 32
    marks = np.empty(buf.size, dtype=bool)
    marks[:1] = ~space[:1]
    np.greater(space[:-1], space[1:], out=marks[1:])               # a separator, then a non-separator
    marks |= np.equal(buf, 10, out=space)                          # newlines
    del space
    marks = np.flatnonzero(marks)
    ends = np.flatnonzero(buf[marks] == 10)
    line_end = marks[ends]
    if ends.size == 0 or line_end[-1] != buf.size - 1:
        ends = np.append(ends, marks.size)                         # last line without a newline
        line_end = np.append(line_end, buf.size)
    return marks, ends, line_end


def _line_field_counts(buf: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fields per line [L], field start offsets [N], index of each line's first field [L+1]).

    For other line-oriented readers (hacm.data.pku); the NTU parser uses `_Lines`.
    """
    marks, ends, _ = _line_marks(buf)
    counts = ends - np.concatenate(([0], ends[:-1] + 1))
    is_field = np.ones(marks.size, dtype=bool)
    is_field[ends[ends < marks.size]] = False
    return counts, marks[is_field], np.concatenate(([0], np.cumsum(counts)))


class _Lines:
    """The file's bytes split into lines and fields (see `_line_marks`), for the layout checks,
    the x, y, z conversion and precise messages."""

    def __init__(self, path: str, data: bytes):
        self.path = path
        self.data = data
        self.marks, ends, self.line_end = _line_marks(np.frombuffer(data, dtype=np.uint8))
        self.line_start = np.concatenate(([0], self.line_end[:-1] + 1))   # [L]
        self.first_mark = np.concatenate(([0], ends[:-1] + 1))             # [L] marks index of the 1st field
        self.counts = ends - self.first_mark                               # [L] fields per line
        self.num_lines = len(self.counts)

    def text(self, i: int) -> bytes:
        return self.data[int(self.line_start[i]):int(self.line_end[i])]

    def texts(self, rows: np.ndarray) -> list[bytes]:
        """text() of many lines at once."""
        data = self.data
        return [data[a:b] for a, b in zip(self.line_start[rows].tolist(), self.line_end[rows].tolist())]

    def error(self, i: int, message: str) -> FormatError:
        return FormatError(self.path, i + 1, message)

    def integer(self, i: int, what: str) -> int:
        """Line i must hold exactly one integer field."""
        if i >= self.num_lines or (i == self.num_lines - 1 and self.counts[i] == 0):
            raise self.error(i, f"unexpected end of file: expected {what}")
        if self.counts[i] != 1:
            raise self.error(i, f"expected 1 field ({what}), found {self.counts[i]}")
        token = self.text(i).strip()
        try:
            return int(token)
        except ValueError:
            raise self.error(i, f"expected an integer ({what}), found {token.decode(errors='replace')!r}") from None


@dataclass
class _Layout:
    """Where everything is: the result of the structure check, before any x, y, z is converted."""
    declared: int                 # line 1
    kept: int                     # frames with at least one body
    empty_frames: list[int]       # 0-based file frames with 0 bodies
    occ_ids: list[str]            # per body occurrence (a body in a frame), in file order
    occ_frames: np.ndarray        # [n_occ] int64 kept-frame index
    occ_joint_line: np.ndarray    # [n_occ] int64 0-based line of the occurrence's first joint


BLOCK_LINES = 2 + NUM_JOINTS      # body line, joint count, joint lines


def _body_id(text: bytes) -> str:
    """The bodyID field of a body line (checked by the caller)."""
    return text.split(None, 1)[0].decode(errors="replace")


def _layout_fast(lines: _Lines) -> _Layout | None:
    """The layout of a well-formed file, checked with a few array operations; None otherwise.

    Accepts exactly the files `_layout_walk` accepts and returns the same layout (tested), but
    touches Python objects only once per frame and body: the walk is kept to word the error.
    """
    counts = lines.counts
    filled = np.flatnonzero(counts)
    if filled.size == 0 or counts[0] != 1:
        return None
    c = counts[:filled[-1] + 1]                   # [L'] trailing blank lines are allowed
    body_lines = np.flatnonzero(c == BODY_FIELDS)
    if body_lines.size and body_lines[-1] + 1 >= c.size:
        return None
    # 1-field lines are the frame count, the body counts (frame headers) and the joint counts
    # (the line after each body line); the headers are what is left.
    is_header = c == 1
    is_header[0] = False
    is_header[body_lines + 1] = False
    headers = np.flatnonzero(is_header)           # [F]
    try:   # int(text.strip()), exactly as the walk reads a count
        declared = int(lines.text(0).strip())
        num_bodies = np.array([int(t.strip()) for t in lines.texts(headers)], dtype=np.int64)   # [F]
    except (ValueError, OverflowError):
        return None
    if declared != headers.size or (num_bodies < 0).any() or (num_bodies > c.size).any():
        return None
    # Each header must sit right after the previous frame's bodies, and the last frame must end
    # the file; then the body lines' places are fixed, and so is every line's field count.
    frame_end = headers + 1 + BLOCK_LINES * num_bodies
    if headers.size and (headers[0] != 1 or frame_end[-1] != c.size
                         or not np.array_equal(frame_end[:-1], headers[1:])):
        return None
    if headers.size == 0 and c.size != 1:
        return None
    occ_frame = np.repeat(np.arange(headers.size), num_bodies)                    # [n_occ] file frame
    first_occ = np.cumsum(num_bodies) - num_bodies                                # [F]
    expected_body_lines = (headers + 1)[occ_frame] + BLOCK_LINES * (np.arange(occ_frame.size) - first_occ[occ_frame])
    if not np.array_equal(body_lines, expected_body_lines):
        return None
    expected = np.full(c.size, JOINT_FIELDS)
    expected[0] = 1
    expected[headers] = 1
    expected[body_lines] = BODY_FIELDS
    expected[body_lines + 1] = 1
    if not np.array_equal(c, expected):
        return None
    try:
        if any(int(t.strip()) != NUM_JOINTS for t in lines.texts(body_lines + 1)):
            return None
    except ValueError:
        return None
    occ_ids = [_body_id(t) for t in lines.texts(body_lines)]
    if not all(b.isdigit() for b in occ_ids) or len(set(zip(occ_frame.tolist(), occ_ids))) != len(occ_ids):
        return None
    has_bodies = num_bodies > 0
    kept_index = np.cumsum(has_bodies) - 1                                        # [F]
    return _Layout(declared=declared, kept=int(has_bodies.sum()),
                   empty_frames=np.flatnonzero(~has_bodies).tolist(), occ_ids=occ_ids,
                   occ_frames=kept_index[occ_frame], occ_joint_line=body_lines + 2)


def _layout_walk(lines: _Lines) -> _Layout:
    """The layout, line by line; raises FormatError naming the first line that is wrong."""
    counts = lines.counts
    declared = lines.integer(0, "the number of frames")
    if declared < 0:
        raise lines.error(0, f"expected a frame count >= 0, found {declared}")
    occ_ids: list[str] = []
    occ_frames: list[int] = []
    occ_joint_line: list[int] = []
    empty_frames: list[int] = []
    line = 1
    kept = 0
    for f in range(declared):
        if line >= lines.num_lines:
            raise lines.error(line, f"unexpected end of file after {f} frames: line 1 declares {declared} "
                                    f"frames (expected the body count of frame {f + 1})")
        num_bodies = lines.integer(line, f"the body count of frame {f + 1}")
        if num_bodies < 0:
            raise lines.error(line, f"expected a body count >= 0 for frame {f + 1}, found {num_bodies}")
        line += 1
        if num_bodies == 0:
            empty_frames.append(f)
            continue
        seen: set[str] = set()
        for b in range(num_bodies):
            what = f"body {b + 1} of frame {f + 1}"
            if line >= lines.num_lines:
                raise lines.error(line, f"unexpected end of file: expected the body line of {what}")
            if counts[line] != BODY_FIELDS:
                raise lines.error(line, f"expected {BODY_FIELDS} fields on the body line of {what}, "
                                        f"found {counts[line]}")
            body_id = _body_id(lines.text(line))
            if not body_id.isdigit():
                raise lines.error(line, f"expected an integer bodyID for {what}, found {body_id!r}")
            if body_id in seen:
                raise lines.error(line, f"bodyID {body_id} appears twice in frame {f + 1}")
            seen.add(body_id)
            num_joints = lines.integer(line + 1, f"the joint count of {what}")
            if num_joints != NUM_JOINTS:
                raise lines.error(line + 1, f"expected joint count {NUM_JOINTS} for {what}, found {num_joints}")
            first = line + 2
            block = counts[first:first + NUM_JOINTS]      # shorter than 25 if the file ends early
            if (block != JOINT_FIELDS).any():
                j = int(np.flatnonzero(block != JOINT_FIELDS)[0])
                if not counts[first + j:].any():
                    raise lines.error(first + j, f"unexpected end of file: expected {NUM_JOINTS} joint lines "
                                                 f"for {what}, found {j}")
                raise lines.error(first + j, f"expected {JOINT_FIELDS} fields on joint {j + 1} of {what}, "
                                             f"found {block[j]}")
            if block.size < NUM_JOINTS:
                raise lines.error(lines.num_lines, f"unexpected end of file: expected {NUM_JOINTS} joint lines "
                                                   f"for {what}, found {block.size}")
            occ_ids.append(body_id)
            occ_frames.append(kept)
            occ_joint_line.append(first)
            line = first + NUM_JOINTS
        kept += 1
    if counts[line:].any():
        extra = line + int(np.flatnonzero(counts[line:])[0])
        raise lines.error(extra, f"unexpected content after the {declared} frames declared on line 1 "
                                 f"(the file holds more frames than declared)")
    return _Layout(declared=declared, kept=kept, empty_frames=empty_frames, occ_ids=occ_ids,
                   occ_frames=np.asarray(occ_frames, dtype=np.int64),
                   occ_joint_line=np.asarray(occ_joint_line, dtype=np.int64))


WINDOW = 16                       # bytes read per token: up to 15 characters and a separator
_ONES = np.uint64(0x0101010101010101)
_SCALE = 10.0 ** np.arange(WINDOW, -1, -1)             # [17] 10**(16 - k), exact in float64


def _before_first(flags: np.ndarray) -> np.ndarray:
    """[2, T] words (bytes 0-7, then 8-15 of each row) of 0/1 bytes -> 0xFF on the bytes before the first 1.

    x & -x keeps the lowest set bit, the first flagged byte's; minus 1 sets every bit below it.
    """
    mask = np.subtract(np.uint64(0), flags)
    mask &= flags
    mask -= np.uint64(1)
    mask[1][flags[0] != 0] = 0                         # a flag in bytes 0-7 ends the row there
    return mask


def _num_bytes(mask: np.ndarray) -> np.ndarray:
    """[2, T] words of 0x00/0xFF bytes -> [T] number of 0xFF bytes."""
    bits = np.bitwise_count(mask)
    return (bits[0] + bits[1]) >> 3


def _eight_digits(w: np.ndarray) -> None:
    """In place: words of 8 digit bytes (ASCII or 0-9, most significant first) -> their value, SWAR style."""
    for mask, scale, shift in ((0x0F0F0F0F0F0F0F0F, 10 * 2**8 + 1, 8), (0x00FF00FF00FF00FF, 100 * 2**16 + 1, 16),
                               (0x0000FFFF0000FFFF, 10000 * 2**32 + 1, 32)):
        w &= np.uint64(mask)                            # pairs of lanes: high * 10**k + low
        w *= np.uint64(scale)
        w >>= np.uint64(shift)


def _parse_decimals(data: bytes, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised float(token) for plain decimals `[+-]digits[.digits]` of <= 15 characters after the sign.

    starts: [T] first byte of each token; data must hold 17 bytes from there on. Returns (values
    [T] float64, ok [T] bool); where ok is False (an exponent, nan, a long or malformed token)
    the value is meaningless. Each token's 16 bytes are read as two little-endian uint64 words
    and handled 8 characters per arithmetic operation. The value is the digit string without its
    dot as an integer (< 10**16 and even, so exact in float64) divided by an exact power of ten:
    one correctly rounded division, hence bit-identical to Python's float(token). Operations
    work in place on a few [2, T] arrays: this runs on every x, y, z of every file.
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    words = np.ndarray((buf.size - 7,), dtype="<u8", buffer=data, strides=(1,))   # a word at every byte
    sign = buf[starts]
    negative = sign == 45
    start = starts + (negative | (sign == 43))             # skip one '-' or '+'
    w = np.empty((2, start.size), dtype="<u8")             # [2, T] bytes 0-7 and 8-15 of each token
    w[0] = words[start]
    w[1] = words[start + 8]
    chars = w.view(np.uint8)                               # [2, 8T]
    inside = _before_first((chars <= 32).view(np.uint64))  # 0xFF on the token's bytes
    dots = (chars == 46).view(np.uint64)
    dots &= inside                                         # 0/1 bytes
    bad = np.subtract(chars, np.uint8(48))
    bad = (bad < 10).view(np.uint64)
    bad |= dots
    bad *= np.uint64(0xFF)
    bad &= inside
    bad ^= inside                                          # a byte of the token that is no digit or dot
    length = _num_bytes(inside)                            # [T] 16: no separator, too long
    num_dots = np.bitwise_count(dots)
    num_dots = num_dots[0] + num_dots[1]
    ok = (length < WINDOW) & (length > num_dots) & (num_dots <= 1) & ((bad[0] | bad[1]) == 0)
    del bad
    # Digits only: cut off what follows the token, then move the bytes after the dot one byte down.
    keep = _before_first(dots)                             # 0xFF before the dot (all, when there is none)
    del dots
    w &= inside
    del inside
    shifted = w >> np.uint64(8)
    shifted[0] |= w[1] << np.uint64(56)
    w ^= shifted                                           # shifted ^ ((w ^ shifted) & keep):
    w &= keep                                              # w before the dot, shifted after it
    shifted ^= w
    _eight_digits(shifted)
    mantissa = shifted[0] * np.uint64(10**8) + shifted[1]  # [T] the digits, then zeros
    # The digit string fills the leading places of 16: the value is
    # mantissa / 10**(16 - number of digits before the dot).
    value = np.divide(mantissa, _SCALE[np.minimum(_num_bytes(keep), length)], dtype=np.float64)
    np.negative(value, out=value, where=negative)          # "-0" gives -0.0, as float() does
    return value, ok


_TOKEN_RE = re.compile(rb"[^\x00-\x20]+")


def _convert_xyz(lines: _Lines, joint_first_lines: np.ndarray) -> np.ndarray:
    """x, y, z of every joint line of every body occurrence as [n_occ, 25, 3] float32.

    Each value is float32(float(token)), as numpy's own bytes -> float32 cast gives. Plain decimals
    (the NTU files) are converted by `_parse_decimals`; any other token goes through float().
    """
    n = joint_first_lines.size
    if n == 0:
        return np.zeros((0, NUM_JOINTS, 3), dtype=np.float32)
    joint_lines = (joint_first_lines[:, None] + np.arange(NUM_JOINTS)).reshape(-1)   # [n*25]
    # Each joint line has 9 more fields after z, at least 18 bytes: the 17-byte reads fit.
    starts = lines.marks[(lines.first_mark[joint_lines][:, None] + np.arange(3)).reshape(-1)]   # [n*75] x y z
    if sys.byteorder == "little":       # _parse_decimals reads bytes as little-endian words
        values, ok = _parse_decimals(lines.data, starts)
    else:
        values, ok = np.zeros(starts.size), np.zeros(starts.size, dtype=bool)
    unparsed: list[int] = []
    for k in np.flatnonzero(~ok).tolist():
        try:
            values[k] = float(_TOKEN_RE.match(lines.data, int(starts[k])).group())
        except ValueError:
            values[k] = np.nan
            unparsed.append(k)
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if not np.isfinite(out).all():
        k = int(np.flatnonzero(~np.isfinite(out))[0])
        text = _TOKEN_RE.match(lines.data, int(starts[k])).group().decode(errors="replace")
        if k in unparsed:
            expected = "a number"
        elif np.isfinite(values[k]):
            expected = "a number within the float32 range (|x| < 3.4e38)"
        else:
            expected = "a finite number"
        raise lines.error(int(joint_lines[k // 3]), f"joint field {XYZ[k % 3]}: expected {expected}, found {text!r}")
    return out.reshape(n, NUM_JOINTS, 3)


def parse_skeleton_bytes(path, data: bytes) -> RawSkeleton:
    """Parse the contents of one `.skeleton` file; `path` is only used in messages."""
    lines = _Lines(str(path), data)
    layout = _layout_fast(lines) or _layout_walk(lines)     # the walk raises the precise error
    joints = _convert_xyz(lines, layout.occ_joint_line)      # [n_occ, 25, 3]
    order: dict[str, list[int]] = {}
    for k, body_id in enumerate(layout.occ_ids):
        order.setdefault(body_id, []).append(k)
    bodies = [RawBody(body_id, layout.occ_frames[idx], joints[idx]) for body_id, idx in
              ((b, np.asarray(ks)) for b, ks in order.items())]
    return RawSkeleton(path=str(path), num_frames=layout.kept, declared_frames=layout.declared,
                       empty_frames=layout.empty_frames, bodies=bodies)


def parse_skeleton_file(path) -> RawSkeleton:
    """Read and parse one NTU `.skeleton` file. FormatError(path, line, ...) on malformed input."""
    with open(path, "rb") as f:
        data = f.read()
    return parse_skeleton_bytes(path, data)
