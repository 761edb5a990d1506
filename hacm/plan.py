"""The device plan of a run (`hacm pretrain ... --dry-run`), and the throughput measurements it projects from.

A plan says what a run of a config would use here, before it starts: the device and how many, the
precision (train.amp resolved, TF32), torch.compile, the global and per-device batch, the loader's
workers, and the time per epoch where benchmarks/bench_model.py has measured this device.

The measurements live in one small JSON file per user, `throughput.json` under the hacm cache
directory ($HACM_CACHE, else $XDG_CACHE_HOME/hacm, else ~/.cache/hacm): bench_model.py appends a
record per (device, work, precision) it measures and replaces an older one of the same key, so a
device measured once is projected for every later run. The work is what decides a step's cost:
the protocol, the model section and the masking ratio and strategy; a record answers a plan only
for the same work and precision (another model's speed says little about this one's).
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hacm import distributed
from hacm.config import RunConfig, to_dict
from hacm.data.loader import default_num_workers
from hacm.errors import FormatError, HacmError
from hacm.fileio import write_text_atomic
from hacm.machine import cpu_model, usable_cores

THROUGHPUT_FILE = "throughput.json"
THROUGHPUT_FORMAT = 1
CACHE_ENV = "HACM_CACHE"


def cache_dir() -> Path:
    """$HACM_CACHE, else $XDG_CACHE_HOME/hacm, else ~/.cache/hacm."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hacm"


def device_key(device: torch.device) -> str:
    """What a measurement is keyed by: the GPU's model name, or the CPU's model and the cores this
    process may use (a CPU's speed scales with them)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()}, {usable_cores()} cores"


def work_key(cfg: RunConfig) -> dict:
    """What decides the cost of a training step of cfg (not its data, seed or schedule)."""
    masking = to_dict(cfg)["masking"]
    return {"protocol": cfg.protocol, "model": to_dict(cfg)["model"],
            "masking": {k: masking[k] for k in ("strategy", "mask_ratio", "cross_grouping")}}


def precision_label(amp: str, tf32: bool, dtype: str, compile: bool) -> str:
    """fp32 | tf32 | bf16 | fp64, with "+compile": the precision modes bench_model.py measures."""
    base = "fp64" if dtype == "float64" else "bf16" if amp == "bf16" else "tf32" if tf32 else "fp32"
    return base + ("+compile" if compile else "")


# ---------------------------------------------------------------------------------------------
# The measurements file


def read_measurements(path: Path | None = None) -> list[dict]:
    """Every record of the measurements file ([] when there is none yet)."""
    path = path or cache_dir() / THROUGHPUT_FILE
    if not path.exists():
        return []
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(path, exc.lineno, f"not a hacm throughput file ({exc.msg}); delete it, "
                          f"bench_model.py writes it again") from None
    except UnicodeDecodeError:
        raise FormatError(path, None, "not a hacm throughput file (not UTF-8 text); delete it, "
                          "bench_model.py writes it again") from None
    if not isinstance(data, dict) or data.get("format") != THROUGHPUT_FORMAT or \
            not isinstance(data.get("measurements"), list):
        raise FormatError(path, None, f"expected {{'format': {THROUGHPUT_FORMAT}, 'measurements': [...]}}; "
                          f"delete it, bench_model.py writes it again")
    return data["measurements"]


def record_measurement(record: dict, path: Path | None = None) -> Path:
    """Add one measurement (keys device, work, precision, batch, clips_per_s, ...), replacing an
    older one of the same device, work, precision and batch; written atomically."""
    path = path or cache_dir() / THROUGHPUT_FILE
    key = ("device", "work", "precision", "batch")
    kept = [r for r in read_measurements(path) if any(r.get(k) != record[k] for k in key)]
    record = {**record, "measured_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_text_atomic(path, json.dumps({"format": THROUGHPUT_FORMAT, "measurements": kept + [record]}, indent=1))
    return path


def find_measurement(records: list[dict], device: str, work: dict, precision: str, batch: int) -> dict | None:
    """The record of this device, work and precision: at this per-device batch if measured, else
    the one at the nearest batch (clips/s depend on the batch far less than on the rest)."""
    same = sorted((r for r in records if r.get("device") == device and r.get("work") == work
                   and r.get("precision") == precision), key=lambda r: r["measured_at"], reverse=True)
    return min(same, key=lambda r: abs(r["batch"] - batch), default=None)   # the latest among equals


# ---------------------------------------------------------------------------------------------
# The plan


@dataclass
class Plan:
    device: torch.device
    devices: int                  # processes of the run, one device each
    device_name: str
    amp: str                      # resolved
    tf32: bool                    # in effect
    precision: str                # precision_label
    compile: bool
    global_batch: int
    batch_per_device: int
    workers: int
    workers_chosen: bool          # data.num_workers unset: hacm.data.loader's choice
    pinned: bool
    train_clips: int | None       # None: the store is not there to count
    steps_per_epoch: int | None
    measurement: dict | None
    lines: list[str]


def device_plan(cfg: RunConfig, world_size: int = 1, measurements: list[dict] | None = None) -> Plan:
    """What a run of cfg with `world_size` processes would use on this machine."""
    t = cfg.train
    device = distributed.resolve_device(t.device)
    if t.batch_size % world_size:
        raise HacmError(f"train.batch_size {t.batch_size} is the global batch and must be divisible by "
                        f"the {world_size} ranks")
    per_device = t.batch_size // world_size
    amp = distributed.resolve_amp(t.amp, t.dtype, device)
    tf32 = distributed.tf32_active(t.tf32, t.dtype, device)
    precision = precision_label(amp, tf32, t.dtype, t.compile)
    workers = default_num_workers() if cfg.data.num_workers is None else cfg.data.num_workers
    name = device_key(device)
    clips = steps = None
    try:
        from hacm.datasets import make_dataset

        clips = len(make_dataset(cfg, None, "train", augment=True))
    except HacmError:
        pass
    if clips is not None:
        steps = clips // t.batch_size
        if t.max_steps_per_epoch is not None:
            steps = min(steps, t.max_steps_per_epoch)
    records = read_measurements() if measurements is None else measurements
    found = find_measurement(records, name, work_key(cfg), precision, per_device)
    plan = Plan(device, world_size, name, amp, tf32, precision, t.compile, t.batch_size, per_device, workers,
                cfg.data.num_workers is None, torch.cuda.is_available(), clips, steps, found, [])
    plan.lines = _describe(cfg, plan, records)
    return plan


def _describe(cfg: RunConfig, p: Plan, records: list[dict]) -> list[str]:
    t = cfg.train
    if p.device.type == "cuda":
        device = f"cuda x {p.devices} ({torch.cuda.get_device_name(p.device)}; {torch.cuda.device_count()} visible)"
    else:
        gpu = "no GPU visible" if not torch.cuda.is_available() else "train.device cpu"
        device = (f"cpu x {p.devices} ({cpu_model()}, {usable_cores()} cores, {torch.get_num_threads()} torch "
                  f"threads; {gpu})")
    amp = f"train.amp {t.amp} -> {p.amp}" if t.amp == "auto" else f"train.amp {p.amp}"
    autocast = "bf16 autocast" if p.amp == "bf16" else "no autocast"
    tf32 = ("TF32 for float32 matmuls and convolutions" if p.tf32 else
            "IEEE float32 products" if t.dtype == "float32" else "float64 throughout")
    lines = [f"device:     {device}",
             f"precision:  {autocast} ({amp}), {tf32}; parameters {t.dtype}",
             f"compile:    {'on' if p.compile else 'off'} (train.compile)",
             f"batch:      {p.global_batch} global = {p.batch_per_device} per device x {p.devices}",
             f"loader:     {p.workers} worker process(es) per rank"
             f"{' (hacm.data.loader default)' if p.workers_chosen else ' (data.num_workers)'}"
             f"{', pinned memory' if p.pinned else ''}"]
    if p.steps_per_epoch is None:
        lines.append(f"epoch:      {cfg.data.store} cannot be opened here: clips per epoch unknown, time not projected")
        return lines
    epoch = f"{p.steps_per_epoch} steps of {p.global_batch} clips ({p.train_clips} training clips)"
    m = p.measurement
    if m is None:
        measured = sorted({r["precision"] for r in records if r.get("device") == p.device_name
                           and r.get("work") == work_key(cfg)})
        why = (f"measured here only in {', '.join(measured)}" if measured else
               "nothing measured for this device and model")
        lines.append(f"epoch:      {epoch}; time not projected ({p.device_name}: {why}; "
                     f"benchmarks/bench_model.py --device {p.device.type} --config <this config> measures it)")
        return lines
    rate = min(m["clips_per_s"], m.get("loader_clips_per_s") or float("inf")) * p.devices
    seconds = p.steps_per_epoch * p.global_batch / rate
    bound = "loader-bound, " if m.get("loader_clips_per_s", float("inf")) < m["clips_per_s"] else ""
    scale = f", x {p.devices} devices assumed linear" if p.devices > 1 else ""
    batch = "" if m["batch"] == p.batch_per_device else f" at per-device batch {m['batch']}"
    lines.append(f"epoch:      {epoch}: about {_duration(seconds)} per epoch, {_duration(seconds * t.epochs)} "
                 f"for {t.epochs} epochs (training steps only; {rate:,.0f} clips/s: {bound}{p.precision} measured by "
                 f"bench_model.py{batch} on {m['measured_at'][:10]}{scale})")
    return lines


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
