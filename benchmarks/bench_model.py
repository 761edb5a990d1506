"""Model benchmark: pre-training step, encoder forward, masking share, FLOPs, peak memory.

    .venv/bin/python benchmarks/bench_model.py [--steps 5] [--configs hacm mamp] [--batch 16]
    .venv/bin/python benchmarks/bench_model.py --device cuda [--steps 20] [--config NAME]   # on a GPU machine
    .venv/bin/python benchmarks/bench_model.py --no-step-tables --steps 2 --throughput-batch 8 --modes fp32 bf16

Each config runs in its own subprocess so its peak RSS (resource.getrusage ru_maxrss) is its own.
Figures are medians over --steps timed steps after one warm-up; FLOP/s are compared with a
1024x1024 matmul measured in the same process. Targets: docs/benchmarks.md.

Then, on --device (cpu: after the tables above; cuda: alone), training throughput of --config (default
the paper config, the shipped ntu60_xsub_pretrain: D=256, global batch 64 unless --throughput-batch)
in fp32 (IEEE products), TF32 (CUDA only), bf16 autocast and bf16 + torch.compile (train.compile):
clips/s, peak memory, the float64 Poincare geometry's share of the step (the same step with
model.geometry euclidean), the training loader's delivered clips/s (synthetic store, default
workers, batches moved to the device), and the projected NTU-60 time (40,320 clips x the config's
epochs) against the 3-hour target. Each mode's figures are recorded for `hacm ... --dry-run`
(hacm.plan: throughput.json in the hacm cache directory) unless --no-record.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from hacm.masking import MaskingConfig
from hacm.model import HACM, ModelConfig

CONFIGS = {
    # HA-CM paper / release setup (docs/method.md)
    "hacm": (ModelConfig(num_frames=72, t_patch=3, prune=True, dim=256, depth=8, heads=8, decoder_depth=3),
             MaskingConfig()),
    # MAMP's shape: 120 frames, all 25 joints, t_patch 4, motion-aware masking, no cross-contrast
    "mamp": (ModelConfig(num_frames=120, t_patch=4, prune=False, dim=256, depth=8, heads=8, decoder_depth=3,
                         geometry="euclidean", motion_expmap=False, cc_weight=0.0),
             MaskingConfig(strategy="motion", keep_high=False, cross_grouping=False, tau=0.8)),
}
PAPER_PRETRAIN = "ntu60_xsub_pretrain"
NTU60_TRAIN_CLIPS, PAPER_EPOCHS, TARGET_HOURS = 40_320, 500, 3.0
MODES = ("fp32", "tf32", "bf16", "bf16+compile")
TARGETS = {"step_fp32_s": 1.2, "step_bf16_s": 0.6, "encoder_ms_per_sample": 50.0, "masking_share": 0.10,
           "geometry_share": 0.10, "peak_rss_gb": 2.6}


def timed(fn, steps: int) -> tuple[float, float]:
    """(median, half-spread) in seconds of `steps` CPU calls of fn after a warm-up call."""
    _, median, spread = device_timed(fn, steps, torch.device("cpu"))
    return median, spread


def matmul_flops(dtype, steps=10) -> float:
    a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
    med, _ = timed(lambda: a @ b, steps)
    return 2 * 1024 ** 3 / med


def count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def worker(name: str, steps: int, batch: int) -> dict:
    cfg, mcfg = CONFIGS[name]
    torch.manual_seed(0)
    model = HACM(cfg, mcfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.05)
    x = torch.randn(batch, 3, cfg.num_frames, 25, 2) * 0.3                       # two actors each
    gen = torch.Generator().manual_seed(0)
    res = {"config": name, "batch": batch, "params": sum(p.numel() for p in model.parameters()),
           "matmul_fp32_flops": matmul_flops(torch.float32), "matmul_bf16_flops": matmul_flops(torch.bfloat16)}

    def step(bf16=False):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = model(x, gen).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    res["step_flops"] = count_flops(lambda: model(x, gen).loss.backward())
    res["step_fp32_s"], res["step_fp32_spread"] = timed(step, steps)
    res["peak_rss_gb_fp32_train"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    res["step_bf16_s"], res["step_bf16_spread"] = timed(lambda: step(True), steps)
    res["masking_s"], _ = timed(lambda: model.masks(x, gen), steps)
    enc = model.encoder.eval()
    with torch.no_grad():
        res["encoder_flops"] = count_flops(lambda: enc(x))
        res["encoder_fp32_s"], res["encoder_fp32_spread"] = timed(lambda: enc(x), steps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            res["encoder_bf16_s"], _ = timed(lambda: enc(x), steps)
        x1 = x.clone()
        x1[..., 1] = 0                                                             # single-person clips
        res["encoder_1actor_fp32_s"], _ = timed(lambda: enc(x1), steps)
    res["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return res


def report(r: dict) -> None:
    b = r["batch"]
    mm = r["matmul_fp32_flops"]
    enc_ms = 1e3 * r["encoder_fp32_s"] / b
    share = r["masking_s"] / r["step_fp32_s"]
    print(f"\n== {r['config']}: {CONFIGS[r['config']][0]}\n   {CONFIGS[r['config']][1]}")
    print(f"   batch {b} x 2 actors, {r['params'] / 1e6:.2f} M parameters")
    print(f"   matmul 1024^2: fp32 {mm / 1e9:.0f} GFLOP/s, bf16 {r['matmul_bf16_flops'] / 1e9:.0f} GFLOP/s")
    rows = [
        ("pre-train step fp32 (fwd+bwd+AdamW)", f"{r['step_fp32_s']:.3f} s +-{r['step_fp32_spread']:.3f}",
         r["step_fp32_s"] / TARGETS["step_fp32_s"], "<= 1.2 s"),
        ("pre-train step bf16 autocast", f"{r['step_bf16_s']:.3f} s +-{r['step_bf16_spread']:.3f}",
         r["step_bf16_s"] / TARGETS["step_bf16_s"], "<= 0.6 s"),
        ("  model FLOPs / step (fwd+bwd)", f"{r['step_flops'] / 1e9:.1f} GFLOP, "
         f"{r['step_flops'] / r['step_fp32_s'] / mm:.0%} of matmul fp32", None, ""),
        ("masking (criteria + sampling) share", f"{r['masking_s'] * 1e3:.0f} ms = {share:.1%} of the fp32 step",
         share / TARGETS["masking_share"], "<= 10 %"),
        ("encoder fwd fp32, all tokens, 2 actors", f"{enc_ms:.1f} ms/sample +-{1e3 * r['encoder_fp32_spread'] / b:.1f}",
         enc_ms / TARGETS["encoder_ms_per_sample"], "<= 50 ms"),
        ("  encoder FLOP/s", f"{r['encoder_flops'] / b / 1e9:.1f} GFLOP/sample, "
         f"{r['encoder_flops'] / r['encoder_fp32_s'] / mm:.0%} of matmul fp32 (target >= 50 %)", None, ""),
        ("encoder fwd bf16 autocast", f"{1e3 * r['encoder_bf16_s'] / b:.1f} ms/sample "
         f"({r['encoder_fp32_s'] / r['encoder_bf16_s']:.2f}x fp32; target >= 2x)", None, ""),
        ("encoder fwd fp32, 2nd actor empty", f"{1e3 * r['encoder_1actor_fp32_s'] / b:.1f} ms/sample "
         f"({r['encoder_fp32_s'] / r['encoder_1actor_fp32_s']:.2f}x faster)", None, ""),
        ("peak RSS, fp32 training", f"{r['peak_rss_gb_fp32_train']:.2f} GB",
         r["peak_rss_gb_fp32_train"] / TARGETS["peak_rss_gb"], "< 2.6 GB"),
    ]
    for label, value, ratio, target in rows:
        tail = f"  ratio to target {ratio:.2f} ({target})" if ratio is not None else ""
        print(f"   {label:<42} {value}{tail}")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_gb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20   # the process so far


def device_timed(fn, steps: int, device: torch.device) -> tuple[float, float, float]:
    """(first call incl. compilation, median, half-spread) of fn in seconds, device-synchronised."""
    def once():
        _sync(device)
        t0 = time.perf_counter()
        fn()
        _sync(device)
        return time.perf_counter() - t0
    first = once()
    times = [once() for _ in range(steps)]
    return first, statistics.median(times), (max(times) - min(times)) / 2


def throughput_mode(cfg, mode: str, x: torch.Tensor, y: torch.Tensor, steps: int) -> dict:
    """Training steps (forward, backward, optimiser) of cfg's protocol in one precision mode, as
    hacm.train takes them (its step loss, TF32 setting and autocast)."""
    from hacm.checkpoint import build_model
    from hacm.config import replace
    from hacm.distributed import Process, float32_products
    from hacm.optim import make_optimizer
    from hacm.train import _step_loss, compile_transformers

    device = x.device
    cfg = replace(cfg, train={"amp": "bf16" if "bf16" in mode else "off", "tf32": mode != "fp32",
                              "compile": "compile" in mode})
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=60).to(device).train()
    if cfg.train.compile:
        compile_transformers(model)
    opt = make_optimizer(model, cfg)
    proc = Process(0, 1, 0, device, owns_group=False)
    count = iter(range(10 ** 9))

    def step():
        loss, _ = _step_loss(model, x, y, cfg, 0, next(count), proc)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with float32_products(mode != "fp32" and device.type == "cuda"):
        first, med, spread = device_timed(step, steps, device)
    return {"clips_per_s": x.shape[0] / med, "step_s": med, "spread_s": spread, "first_step_s": first,
            "peak_gb": _peak_gb(device)}


def loader_throughput(cfg, device: torch.device, min_clips: int = 2000) -> dict:
    """Clips/s the training loader delivers onto the device (pre-training augmentation, default
    workers) from a small synthetic store generated here."""
    import tempfile
    from pathlib import Path

    from hacm.config import replace
    from hacm.data.convert import convert_ntu
    from hacm.data.loader import default_num_workers, make_loader
    from hacm.data.store import Store
    from hacm.data.synth import write_synthetic
    from hacm.datasets import make_dataset

    with tempfile.TemporaryDirectory() as tmp:
        write_synthetic(Path(tmp) / "raw", seed=0, performers=6, replications=1, progress=False)
        store = convert_ntu(Path(tmp) / "raw", Path(tmp) / "store", progress=False).store_path
        cfg = replace(cfg, data={"store": str(store), "benchmark": "synth-xsub"})
        dataset = make_dataset(cfg, Store.open(store), "train", augment=True)
        workers = default_num_workers()
        loader = make_loader(dataset, cfg.train.batch_size, train=True, num_workers=workers, drop_last=False)
        clips, epoch, t0 = 0, 0, None
        while clips < min_clips:
            dataset.set_epoch(epoch)
            loader.sampler.set_epoch(epoch)
            for xb, _ in loader:
                xb.to(device, non_blocking=True)
                if t0 is None:             # from the first batch on: worker start-up excluded
                    _sync(device)
                    t0 = time.perf_counter()
                else:
                    clips += xb.shape[0]
            epoch += 1
        _sync(device)
        seconds = time.perf_counter() - t0
        del loader
    return {"loader_clips_per_s": clips / seconds, "loader_workers": workers, "loader_clips": clips}


def throughput_worker(config: str, device_name: str, steps: int, batch: int | None, modes: list[str]) -> dict:
    from hacm.config import load_config, replace
    from hacm.plan import device_key, precision_label, work_key

    cfg = load_config(config)
    if batch:
        cfg = replace(cfg, train={"batch_size": batch})
    device = torch.device(device_name)
    if device.type == "cpu" and "tf32" in modes:
        modes = [m for m in modes if m != "tf32"]           # TF32 is a CUDA tensor-core format
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(cfg.train.batch_size, 3, cfg.model.num_frames, 25, 2, generator=gen) * 0.3).to(device)
    y = torch.randint(0, 60, (cfg.train.batch_size,), generator=gen).to(device)
    res = {"config": config, "device": device_name, "key": device_key(device), "batch": cfg.train.batch_size,
           "steps": steps, "work": work_key(cfg), "epochs": cfg.train.epochs,
           "modes": {mode: throughput_mode(cfg, mode, x, y, steps) for mode in modes}}
    for mode, m in res["modes"].items():
        m["precision"] = precision_label("bf16" if "bf16" in mode else "off", mode != "fp32" and device.type == "cuda",
                                         "float32", "compile" in mode)
    if cfg.model.geometry == "poincare":
        # the geometry's share: the same step with Euclidean tokens (no expmap0 / distances in float64)
        eager = [m for m in res["modes"] if "compile" not in m]
        if eager:
            mode = min(eager, key=lambda k: res["modes"][k]["step_s"])
            flat = throughput_mode(replace(cfg, model={"geometry": "euclidean"}), mode, x, y, steps)
            res["geometry"] = {"mode": mode, "euclidean_step_s": flat["step_s"],
                               "share": 1 - flat["step_s"] / res["modes"][mode]["step_s"]}
    res.update(loader_throughput(cfg, device))
    return res


def throughput_report(r: dict) -> None:
    print(f"\n== training throughput, {r['config']} ({r['work']['protocol']}, D={r['work']['model']['dim']}, "
          f"batch {r['batch']} x 2 actors), device {r['device']} ({r['key']}), medians of {r['steps']} steps "
          f"after a warm-up")
    if r["device"] == "cpu":
        print("   (no tf32 row: TF32 is a CUDA tensor-core format; on a CPU fp32 is what it would measure)")
    for mode, m in r["modes"].items():
        print(f"   {mode:<14} {m['clips_per_s']:8.1f} clips/s  step {m['step_s']:.3f} s +-{m['spread_s']:.3f}  "
              f"first step {m['first_step_s']:.1f} s  peak {'GPU memory' if r['device'] == 'cuda' else 'RSS'} "
              f"{m['peak_gb']:.2f} GB{'' if r['device'] == 'cuda' else ' (process so far)'}")
    base = r["modes"].get("fp32")
    if base:
        print("   speed-up over fp32: " + ", ".join(f"{mode} {m['clips_per_s'] / base['clips_per_s']:.2f}x"
                                                  for mode, m in r["modes"].items() if mode != "fp32"))
    if "geometry" in r:
        g = r["geometry"]
        print(f"   float64 Poincare geometry: {g['share']:.1%} of the {g['mode']} step (Euclidean tokens: "
              f"{g['euclidean_step_s']:.3f} s); ratio to the 10 % target {g['share'] / TARGETS['geometry_share']:.2f}")
    print(f"   loader         {r['loader_clips_per_s']:8.1f} clips/s delivered to {r['device']} "
          f"({r['loader_workers']} workers, {r['loader_clips']} clips, training augmentation)")
    best_mode = max(r["modes"], key=lambda k: r["modes"][k]["clips_per_s"])
    model_rate = r["modes"][best_mode]["clips_per_s"]
    rate = min(model_rate, r["loader_clips_per_s"])
    hours = NTU60_TRAIN_CLIPS * r["epochs"] / rate / 3600
    bound = "the loader" if r["loader_clips_per_s"] < model_rate else f"the model ({best_mode})"
    print(f"   projected NTU-60 training ({NTU60_TRAIN_CLIPS:,} clips x {r['epochs']} epochs) at "
          f"{rate:.1f} clips/s (bound by {bound}): {hours:,.1f} h; ratio to the {TARGET_HOURS:g} h target "
          f"{hours / TARGET_HOURS:.2f}")


def record(r: dict) -> None:
    """Each mode's figures into the measurements `hacm ... --dry-run` projects from (hacm.plan)."""
    from hacm.plan import record_measurement

    for mode, m in r["modes"].items():
        path = record_measurement({"device": r["key"], "work": r["work"], "precision": m["precision"],
                                   "batch": r["batch"], "config": r["config"], "clips_per_s": m["clips_per_s"],
                                   "loader_clips_per_s": r["loader_clips_per_s"], "loader_workers": r["loader_workers"],
                                   "peak_gb": m["peak_gb"], "steps": r["steps"], "torch": torch.__version__})
    print(f"   recorded for `hacm ... --dry-run`: {path}")


def _run_worker(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"benchmark worker {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                    help="cpu: the step tables of --configs, then the throughput table; cuda: the throughput table")
    ap.add_argument("--config", default=PAPER_PRETRAIN, metavar="NAME",
                    help=f"config of the throughput table: a shipped name or a file (default {PAPER_PRETRAIN})")
    ap.add_argument("--throughput-batch", type=int, default=None,
                    help="global batch of the throughput table (default: the config's; the paper's is 64)")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES,
                    help="precision modes of the throughput table (bf16+compile compiles for minutes on a CPU)")
    ap.add_argument("--no-record", action="store_true",
                    help="do not record the throughput figures for `hacm ... --dry-run` (hacm.plan)")
    ap.add_argument("--no-step-tables", action="store_true", help="on the CPU, the throughput table alone")
    ap.add_argument("--worker", choices=[*CONFIGS, "throughput"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker == "throughput":
        print(json.dumps(throughput_worker(args.config, args.device, args.steps, args.throughput_batch, args.modes)))
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_model: --device cuda, but torch sees no CUDA GPU on this machine "
              f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
              "run with --device cpu for the same table on the CPU", file=sys.stderr)
        return 2
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}")
    if args.device == "cpu" and not args.no_step_tables:
        for name in args.configs:
            report(_run_worker("--worker", name, "--steps", str(args.steps), "--batch", str(args.batch)))
    extra = ["--throughput-batch", str(args.throughput_batch)] if args.throughput_batch else []
    result = _run_worker("--worker", "throughput", "--config", args.config, "--device", args.device,
                         "--steps", str(args.steps), "--modes", *args.modes, *extra)
    throughput_report(result)
    if not args.no_record:
        record(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
