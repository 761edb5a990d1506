"""Model benchmark: pre-training step, encoder forward, masking share, FLOPs, peak memory.

    .venv/bin/python benchmarks/bench_model.py [--steps 5] [--configs hacm mamp] [--batch 16]

Each config runs in its own subprocess so its peak RSS (resource.getrusage ru_maxrss) is its own.
Figures are medians over --steps timed steps after one warm-up; FLOP/s are compared with a
1024x1024 matmul measured in the same process. Targets: docs/benchmarks.md.
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
TARGETS = {"step_fp32_s": 1.2, "step_bf16_s": 0.6, "encoder_ms_per_sample": 50.0, "masking_share": 0.10,
           "peak_rss_gb": 2.6}


def timed(fn, steps: int) -> tuple[float, float]:
    fn()                                                    # warm-up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), (max(times) - min(times)) / 2


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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--worker", choices=list(CONFIGS), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.steps, args.batch)))
        return 0
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    for name in args.configs:
        out = subprocess.run([sys.executable, __file__, "--worker", name, "--steps", str(args.steps),
                              "--batch", str(args.batch)], capture_output=True, text=True, check=True)
        report(json.loads(out.stdout.strip().splitlines()[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
