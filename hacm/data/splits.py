"""The standard NTU RGB+D evaluation protocols as sample index arrays (docs/data.md, "Benchmarks and
their splits")."""
from __future__ import annotations

import numpy as np

from hacm.errors import HacmError

NTU60_XSUB_TRAIN_PERFORMERS = frozenset({
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
})
NTU120_XSUB_TRAIN_PERFORMERS = NTU60_XSUB_TRAIN_PERFORMERS | frozenset({
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86,
    89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
})
NTU60_XVIEW_TRAIN_CAMERAS = frozenset({2, 3})


def _known(field: str, values: np.ndarray) -> np.ndarray:
    unknown = int((values <= 0).sum())
    if unknown:
        raise HacmError(f"cannot split: {field} is unknown (0) for {unknown} of {values.size} samples")
    return values


def _by_rule(train_mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"train": np.flatnonzero(train_mask).astype(np.int64),
            "test": np.flatnonzero(~train_mask).astype(np.int64)}


def ntu_splits(dataset: str, performer, camera, setup) -> dict[str, dict[str, np.ndarray]]:
    """Per-benchmark train/test indices from 1-based per-sample performer, camera and setup ids.

    "ntu60" -> ntu60-xsub, ntu60-xview; "ntu120" -> ntu120-xsub, ntu120-xset (even setups train);
    "synth" -> synth-xsub (the NTU-60 performer rule), synth-xview (cameras 2, 3 train, 1 test).
    """
    performer, camera, setup = (np.asarray(a, dtype=np.int64).reshape(-1) for a in (performer, camera, setup))
    if not performer.size == camera.size == setup.size:
        raise HacmError(f"cannot split: performer, camera and setup have different lengths "
                        f"({performer.size}, {camera.size}, {setup.size})")

    def xsub(train_performers):
        return _by_rule(np.isin(_known("performer", performer), list(train_performers)))

    def xview():
        return _by_rule(np.isin(_known("camera", camera), list(NTU60_XVIEW_TRAIN_CAMERAS)))

    if dataset == "ntu60":
        return {"ntu60-xsub": xsub(NTU60_XSUB_TRAIN_PERFORMERS), "ntu60-xview": xview()}
    if dataset == "ntu120":
        return {"ntu120-xsub": xsub(NTU120_XSUB_TRAIN_PERFORMERS),
                "ntu120-xset": _by_rule(_known("setup", setup) % 2 == 0)}
    if dataset == "synth":
        return {"synth-xsub": xsub(NTU60_XSUB_TRAIN_PERFORMERS), "synth-xview": xview()}
    raise HacmError(f"ntu_splits: unknown dataset {dataset!r}; expected one of 'ntu60', 'ntu120', 'synth'")
