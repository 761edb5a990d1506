"""Mask-explorer latency per control: from a widget value change to every figure redrawn (Python side).

    python benchmarks/bench_explorer.py [--repeats N]

Builds a synthetic store and two checkpoints of the demo's shapes (an HA-CM run: Poincaré, 24
frames, t_patch 3, width 64; a MAMP-style run: Euclidean, motion masking), makes the JupyterLab
widget (hacm.viz.explorer_widget.ExplorerWidget) and changes each control in turn, as a user would.
A change runs the widget's own handler: dependent controls, masks of every criterion, the five
figures and their in-place FigureWidget updates. Prints the median and the slowest of N changes
per control (the first change of a checkpoint or clip also embeds it; that one is shown apart), and
the time to draw the views over many clips (their button).
What the browser adds (message transfer, plotly drawing) is measured by tests/test_browser_explorer.py.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch


def make_inputs(root: Path) -> tuple[Path, dict[str, str]]:
    from hacm import checkpoint as ckpt
    from hacm.config import DataConfig, RunConfig, to_dict
    from hacm.data.convert import convert_ntu
    from hacm.data.synth import write_synthetic
    from hacm.masking import MaskingConfig
    from hacm.model import HACM, ModelConfig

    write_synthetic(root / "raw", performers=3, replications=1, cameras=(1,), progress=False)
    convert_ntu(root / "raw", root / "store", progress=False)
    demo = dict(num_frames=24, t_patch=3, dim=64, depth=3, heads=4, decoder_dim=64, decoder_depth=1)
    runs = {"HA-CM": (ModelConfig(**demo), MaskingConfig()),
            "MAMP-style": (ModelConfig(**demo, geometry="euclidean", cc_weight=0.0, motion_expmap=False),
                           MaskingConfig(strategy="motion"))}
    out = {}
    for name, (model, masking) in runs.items():
        cfg = RunConfig(data=DataConfig(window_size=model.num_frames), model=model, masking=masking)
        torch.manual_seed(0)
        path = root / name / ckpt.CHECKPOINT_DIR / "last.pt"
        ckpt.save_checkpoint(path, {"format": ckpt.FORMAT, "version": ckpt.VERSION, "protocol": "pretrain",
                                    "config": to_dict(cfg), "model": HACM(cfg.model, cfg.masking).state_dict()})
        out[name] = str(path)
    return root / "store", out


def values(control, repeats: int) -> list:
    """`repeats` successive values a user could pick for a control (sliders step, dropdowns cycle)."""
    if isinstance(control.value, bool):          # a checkbox: toggle
        return [bool((k + 1) % 2) ^ control.value for k in range(repeats)]
    if hasattr(control, "options"):
        opts = [o[1] if isinstance(o, tuple) else o for o in control.options]
        return [opts[(opts.index(control.value) + k + 1) % len(opts)] for k in range(repeats)]
    step = getattr(control, "step", 1)
    span = [control.min + k * step for k in range(int(round((control.max - control.min) / step)) + 1)]
    if hasattr(control, "base"):                 # a log slider: min, max and step are exponents
        span = [control.base ** e for e in span]
    return [span[(k + 1) % len(span)] for k in range(repeats)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=6)
    args = parser.parse_args()
    from hacm.viz.explorer import MaskExplorer
    from hacm.viz.explorer_widget import ExplorerWidget

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        store, checkpoints = make_inputs(Path(tmp))
        ui = ExplorerWidget(MaskExplorer(store, {**checkpoints, "untrained": None}))
        print(f"{'control':<14} {'first (ms)':>10} {'median (ms)':>12} {'max (ms)':>9}")
        for name, control in ui.controls.items():
            if getattr(control, "options", (0, 1)) and len(getattr(control, "options", (0, 1))) < 2:
                continue       # one choice (a one-person clip's actor): nothing to change
            times = []
            for value in values(control, args.repeats):
                control.value = value
                if ui.status.value:
                    raise SystemExit(f"{name} = {value!r}: {ui.status.value}")
                times.append(1000 * ui.latency_s)
            print(f"{name:<14} {times[0]:>10.0f} {statistics.median(times[1:]):>12.0f} {max(times[1:]):>9.0f}")
        # the views over many clips: drawn on their button (embedding cached per checkpoint after the first)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            ui.draw_over_clips()
            times.append(1000 * (time.perf_counter() - start))
        print(f"{'over clips':<14} {times[0]:>10.0f} {statistics.median(times[1:]):>12.0f} {max(times[1:]):>9.0f}")


if __name__ == "__main__":
    main()
