"""PKU-MMD Phase I / II -> hacm store (layout in docs/data.md).

raw_dir holds `skeleton/<video>.txt` (one frame per line: 150 floats = 2 bodies x 25 joints x
xyz), `label/<video>.txt` (lines `label,start,end,confidence`) and the split files
`cross_subject.txt`, `cross_view.txt` (Phase II: `*_v2.txt`; also looked for in raw_dir/split
and with '-' for '_'). Each labelled interval is one sample named `<video>_<k>` (k = 0-based
line of the label file), frames `start:end` as the common PKU-MMD preprocessing slices them,
truncated to 300 frames; all-zero samples are dropped; actor 2 is kept only if non-zero.
`centre=True` centres each sample as NTU samples are (actor 1's spine-mid joint in its first
present frame is the origin); `centre=False` keeps the camera coordinates, as MAMP's
pku_gendata.py does (the choice of default is measured in docs/differences.md).
"""
from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

import numpy as np

from hacm import lock
from hacm.data.classes import PKU_MMD_CLASSES
from hacm.data.convert import ConversionReport, write_store
from hacm.data.denoise import centre as centre_sample
from hacm.data.raw_ntu import _line_field_counts
from hacm.errors import FormatError, HacmError
from hacm.progress import progress_bar
from hacm.skeleton import NUM_JOINTS

MAX_FRAMES = 300
FRAME_FIELDS = 2 * NUM_JOINTS * 3     # 150
SPLIT_FILES = {"xsub": "cross_subject", "xview": "cross_view"}
CAMERAS = {"L": 1, "M": 2, "R": 3}    # video "0002-L": the view letter


def read_pku_skeleton(path) -> np.ndarray:
    """One skeleton/<video>.txt -> [T, 2, 25, 3] float32; FormatError(path, line, ...) if malformed."""
    data = Path(path).read_bytes()
    counts, _, _ = _line_field_counts(np.frombuffer(data, dtype=np.uint8))
    last = len(counts) - int(np.flatnonzero(counts[::-1])[0]) if counts.any() else 0   # drop trailing blanks
    bad = np.flatnonzero(counts[:last] != FRAME_FIELDS)
    if bad.size:
        i = int(bad[0])
        raise FormatError(path, i + 1, f"expected {FRAME_FIELDS} numbers per frame (2 bodies x 25 joints x "
                                       f"xyz), found {counts[i]} fields")
    try:
        values = np.array(data.split(), dtype=np.float32)     # every field checked: exactly 150 a line
    except ValueError:
        values = None
    if values is None or values.size != last * FRAME_FIELDS or not np.isfinite(values).all():
        for i, line in enumerate(data.split(b"\n")[:last]):
            for token in line.split():
                try:
                    ok = np.isfinite(float(token))
                except ValueError:
                    ok = False
                if not ok:
                    raise FormatError(path, i + 1, f"expected a finite number, found "
                                                   f"{token.decode(errors='replace')!r}")
        raise FormatError(path, None, "values could not be converted to numbers")
    return values.reshape(last, 2, NUM_JOINTS, 3)


def _read_lines(path) -> list[str]:
    """A text file's lines; bytes that are not UTF-8 are a FormatError at their line."""
    data = Path(path).read_bytes()
    try:
        return data.decode().splitlines()
    except UnicodeDecodeError as e:
        raise FormatError(path, data[:e.start].count(b"\n") + 1,
                          f"expected UTF-8 text, found byte 0x{data[e.start]:02x}") from None


def read_pku_labels(path, num_classes: int = len(PKU_MMD_CLASSES)) -> list[tuple[int, int, int]]:
    """label/<video>.txt -> [(0-based label, start, end)]; FormatError on a malformed line."""
    out = []
    for i, line in enumerate(_read_lines(path)):
        if not line.strip():
            continue
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 4:
            raise FormatError(path, i + 1, f"expected 4 comma-separated fields label,start,end,confidence, "
                                           f"found {len(fields)}")
        try:
            label, start, end = (int(f) for f in fields[:3])
            float(fields[3])
        except ValueError:
            raise FormatError(path, i + 1, f"expected integers label,start,end and a numeric confidence, "
                                           f"found {line.strip()!r}") from None
        if not 1 <= label <= num_classes:
            raise FormatError(path, i + 1, f"expected a label in 1..{num_classes}, found {label}")
        if not 0 <= start < end:
            raise FormatError(path, i + 1, f"expected 0 <= start < end, found start {start}, end {end}")
        out.append((label - 1, start, end))
    return out


def read_pku_split(path) -> tuple[list[str], list[str]]:
    """Split file: line 2 = training videos, line 4 = test videos, comma-separated."""
    lines = _read_lines(path)
    if len(lines) < 4:
        raise FormatError(path, len(lines) + 1, "expected 4 lines (title, training videos, title, test videos)")
    train, test = ([v.strip() for v in lines[i].split(",") if v.strip()] for i in (1, 3))
    if not train or not test:
        raise FormatError(path, 2 if not train else 4, "expected a comma-separated list of video names")
    return train, test


def _find_split_file(raw_dir: Path, stem: str) -> Path:
    for folder in (raw_dir, raw_dir / "split", raw_dir / "Split"):
        for name in (stem, stem.replace("_", "-")):
            if (folder / f"{name}.txt").is_file():
                return folder / f"{name}.txt"
    raise HacmError(f"{raw_dir}: no split file {stem}.txt (looked in {raw_dir}, split/, Split/)")


def _convert_video(args) -> tuple[list[dict], list[dict]]:
    """One video -> (samples, manifest rows)."""
    skeleton, label_file, centre = args
    video = skeleton.stem
    if not label_file.is_file():
        return [], [{"video": video, "status": "dropped", "reason": "format_error",
                     "message": f"{label_file}: missing label file for {skeleton}"}]
    try:
        labels = read_pku_labels(label_file)
        frames = read_pku_skeleton(skeleton)                           # [T, 2, 25, 3]
    except FormatError as e:
        return [], [{"video": video, "status": "dropped", "reason": "format_error", "message": str(e)}]
    except (OSError, UnicodeDecodeError) as e:
        return [], [{"video": video, "status": "dropped", "reason": "unreadable", "message": f"{video}: {e}"}]
    camera = CAMERAS.get(video.rsplit("-", 1)[-1], 0)
    samples, rows = [], []
    for k, (label, start, end) in enumerate(labels):
        name = f"{video}_{k}"
        clip = frames[start:end][:MAX_FRAMES].transpose(1, 0, 2, 3)     # [2, T, 25, 3]
        row = {"video": video, "name": name, "label": label, "start": start, "end": end}
        if clip.shape[1] == 0 or not clip.any():
            rows.append(row | {"status": "dropped", "reason": "all_zero" if clip.shape[1] else "empty_interval"})
            continue
        if not clip[1].any():
            clip = clip[:1]
        if centre:
            clip = centre_sample(clip)
        samples.append({"name": name, "label": label, "frames": np.ascontiguousarray(clip), "camera": camera})
        rows.append(row | {"status": "kept", "frames": int(clip.shape[1]), "actors": int(clip.shape[0])})
    return samples, rows


def _counted(items, bar):
    """`items`, advancing the progress bar by one for each."""
    for item in items:
        yield item
        bar.update()


def _pku_splits(phase: int, names: list[str], split_videos: dict) -> dict[str, dict[str, np.ndarray]]:
    """pku<phase>-xsub / -xview train/test indices from the sample names `<video>_<k>`."""
    video_of = np.asarray([n.rsplit("_", 1)[0] for n in names], dtype=str)
    return {f"pku{phase}-{proto}": {"train": np.flatnonzero(np.isin(video_of, train)),
                                    "test": np.flatnonzero(np.isin(video_of, test))}
            for proto, (train, test) in split_videos.items()}


@lock.writer_of("out_dir", "store directory")
def convert_pku(raw_dir, out_dir, phase: int, *, centre: bool = True, workers: int | None = None,
                allow_errors: bool = False, progress: bool = True) -> ConversionReport:
    """Convert PKU-MMD Phase `phase` (1 or 2) into a store with pku<phase>-xsub / -xview splits;
    `centre` each sample (hacm) or keep camera coordinates (MAMP)."""
    t0 = time.perf_counter()
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if phase not in (1, 2):
        raise HacmError(f"PKU-MMD phase {phase!r}: expected 1 or 2")
    skeleton_dir, label_dir = raw_dir / "skeleton", raw_dir / "label"
    if not skeleton_dir.is_dir():
        raise HacmError(f"{skeleton_dir}: no such directory (expected skeleton/<video>.txt files)")
    videos = sorted(skeleton_dir.glob("*.txt"))
    if not videos:
        raise HacmError(f"{skeleton_dir}: no <video>.txt skeleton files")
    suffix = "_v2" if phase == 2 else ""
    split_videos = {proto: read_pku_split(_find_split_file(raw_dir, stem + suffix))
                    for proto, stem in SPLIT_FILES.items()}
    workers = max(1, int(workers or os.cpu_count() or 1))

    dataset = f"pku{phase}"
    jobs = [(v, label_dir / v.name, centre) for v in videos]
    pool = multiprocessing.get_context().Pool(workers) if workers > 1 else None
    try:
        with progress_bar(total=len(jobs), unit="video", desc=f"convert {dataset}", disable=not progress) as bar:
            results = pool.imap(_convert_video, jobs) if pool else map(_convert_video, jobs)
            rows, errors = write_store(
                out_dir, dataset, PKU_MMD_CLASSES, _counted(results, bar), columns=("name",),
                splits=lambda v: _pku_splits(phase, v["name"], split_videos),
                summary={"dataset": dataset, "raw_dir": str(raw_dir), "videos": len(videos), "centred": centre},
                allow_errors=allow_errors, advice="Fix or remove those videos, or rerun with --allow-errors.")
    finally:
        if pool:
            pool.terminate()
    return ConversionReport.from_rows(out_dir, dataset, rows, errors, t0, workers)

