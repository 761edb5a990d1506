"""Do HA-CM's mechanisms act? The geometry, the masking criteria and the cross-contrast, measured
at the paper width (D = 256) at initialisation and on a model after synthetic pre-training.

    .venv/bin/python benchmarks/bench_mechanisms.py [--run RUN_DIR] [--store STORE] [--clips 48]

--run: a pre-training run directory to measure as "trained" (e.g. reports/demo/pretrain_hacm/run);
without it, the synth_pretrain config is pre-trained here for --epochs epochs (a few minutes).
--store: a hacm store (default: a small synthetic one is generated in a temp dir).

Prints, for each model, on --clips test clips:
  - token norms |e| and the share of tokens at a projection bound: geoopt's float32 projection
    (eps 4e-3; what hacm did before), the release's (1e-5), hacm's float64 map (model.ball_eps), and
    feature clipping (model.clip_radius) at a few radii
  - the spread of dist0 across tokens, and the share of token pairs whose geoopt ball distance
    saturates at 2 artanh(1 - 1e-7) = 16.8 (hacm measures on the hyperboloid instead)
  - the keep-probability spread max p / min p per criterion and normalisation at the config's tau
    (1 = random masking)
  - the cross-contrast loss under the release's dot products and under cosine / temperature,
    against the value of uniform rows, and the gradient norm each sends to the encoder
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import platform
import tempfile
import time
from pathlib import Path

import geoopt
import numpy as np
import torch

from hacm import losses, train
from hacm.config import load_config
from hacm.data.convert import convert_ntu
from hacm.data.dataset import SkeletonDataset
from hacm.data.synth import write_synthetic
from hacm.evaluate import load_run
from hacm.geometry import RELEASE_BALL_EPS
from hacm.masking import MaskingConfig
from hacm.model import HACM, ModelConfig, split_actors

PAPER = ModelConfig(num_frames=72, t_patch=3, prune=True, dim=256, depth=8, heads=8, decoder_depth=3)
CLIP_RADII = (1.0, 2.0, 3.0)
GEOOPT_BALL_CAP = 2 * math.atanh(1 - 1e-7)


def clips(store, num_frames: int, n: int) -> torch.Tensor:
    ds = SkeletonDataset(store, "synth-xsub", "test", window_size=num_frames, p_interval=(0.95,))
    return torch.stack([ds[i][0] for i in np.linspace(0, len(ds) - 1, n).astype(int)])


def pct(x: float) -> str:
    return f"{100 * x:5.1f} %"


@torch.no_grad()
def geometry_report(model: HACM, x: torch.Tensor) -> None:
    seqs, _ = split_actors(x)
    e = model.encoder.embed(seqs)                                                  # [S, TP, V, D]
    geo = model.encoder.geometry
    norms = e.norm(dim=-1).flatten()
    q = np.percentile(norms.numpy(), [0, 5, 50, 95, 100])
    print(f"  token |e|: min {q[0]:.2f}  5% {q[1]:.2f}  median {q[2]:.2f}  95% {q[3]:.2f}  max {q[4]:.2f}")
    ball32 = geoopt.PoincareBall()
    at32 = (ball32.projx(ball32.expmap0(e)).norm(dim=-1) >= 1 - 4e-3 - 1e-6).float().mean().item()
    at_release = (norms > math.atanh(1 - RELEASE_BALL_EPS)).float().mean().item()
    at_hacm = (geo.expmap0(e.double()).norm(dim=-1) >= 1 - model.cfg.ball_eps * (1 + 1e-6)).double().mean().item()
    print(f"  tokens at the projection bound: geoopt float32 (eps 4e-3) {pct(at32)}   release (eps 1e-5) "
          f"{pct(at_release)}   hacm float64 (eps {model.cfg.ball_eps:g}) {pct(at_hacm)}")
    clipped = "   ".join(f"r={r:g} {pct((norms > r).float().mean().item())}" for r in CLIP_RADII)
    print(f"  tokens feature clipping would clip: {clipped}")
    d0 = geo.dist0(geo.points(e)).flatten()
    d0_32 = ball32.dist0(ball32.projx(ball32.expmap0(e))).flatten()
    print(f"  dist0 across tokens: std {d0.std():.3f} (range {d0.min():.2f}..{d0.max():.2f}); "
          f"through geoopt float32: std {d0_32.std():.2e}")
    sub = e[: min(8, len(e))].double()
    ball = geoopt.PoincareBall(c=torch.tensor(1.0, dtype=torch.float64))
    p = ball.expmap0(sub, project=False)
    off = ~torch.eye(sub.shape[2], dtype=torch.bool)
    capped = (ball.dist(p.unsqueeze(-2), p.unsqueeze(-3))[..., off] >= GEOOPT_BALL_CAP - 1e-6).double().mean().item()
    exact = geo.pairwise_dist(geo.points(sub))[..., off]
    print(f"  token pairs of a time patch: geoopt ball distance saturated at {GEOOPT_BALL_CAP:.1f} for "
          f"{pct(capped)}; exact (hyperboloid) median {exact.median():.2f}, max {exact.max():.2f}")


@torch.no_grad()
def spread_report(model: HACM, x: torch.Tensor, tau: float) -> None:
    rows = []
    for strategy in ("spatial_only", "temporal_only", "motion"):
        for normalise in ("release", "standard"):
            masking = MaskingConfig(strategy=strategy, tau=tau, normalise=normalise, cross_grouping=True)
            spread = model.masks(x, torch.Generator().manual_seed(0), masking).spread_by_criterion()
            rows.append(f"{next(iter(spread))} {normalise} {next(iter(spread.values())):.2f}x")
    print(f"  keep-probability spread max p / min p at tau {tau:g}: " + "   ".join(rows))


def cc_report(model: HACM, x: torch.Tensor) -> None:
    own = model.cfg
    for similarity in ("release", "cosine"):
        m = model.cfg = dataclasses.replace(own, cc_similarity=similarity)
        model.zero_grad(set_to_none=True)
        out = model(x, torch.Generator().manual_seed(0))
        out.loss_cc.backward()
        grad = torch.sqrt(sum((p.grad ** 2).sum() for p in model.encoder.parameters() if p.grad is not None))
        n = int(out.actor_mask.sum())
        uniform = losses.uniform_cross_contrast(n, terms=3 if m.cc_odd_even_term else 2)
        name = "release (dot products)" if similarity == "release" else f"cosine / {m.cc_temperature:g}"
        print(f"  cross-contrast {name}: {out.loss_cc.item():.4f} (uniform rows: {uniform:.4f}), "
              f"encoder gradient norm {grad.item():.2e}")
    model.cfg = own
    model.zero_grad(set_to_none=True)


def report(title: str, model: HACM, x: torch.Tensor, tau: float) -> None:
    print(f"\n{title}")
    t0 = time.perf_counter()
    model.eval()
    geometry_report(model, x)
    spread_report(model, x, tau)
    model.train()
    cc_report(model, x)
    print(f"  ({time.perf_counter() - t0:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, help="pre-training run directory to measure as the trained model")
    ap.add_argument("--store", type=Path, help="hacm store with a synth-xsub benchmark (default: generated)")
    ap.add_argument("--clips", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=40, help="synthetic pre-training epochs when --run is not given")
    args = ap.parse_args()
    print(f"bench_mechanisms: torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        store = args.store
        if store is None:
            write_synthetic(Path(tmp) / "raw", seed=0, performers=6, replications=1, progress=False)
            store = convert_ntu(Path(tmp) / "raw", Path(tmp) / "store", progress=False).store_path
        torch.manual_seed(0)
        paper = HACM(PAPER, MaskingConfig())
        report(f"paper width D=256, initialisation ({args.clips} synthetic test clips, 72 frames)", paper,
               clips(store, PAPER.num_frames, args.clips), 0.9)
        if args.run is None:
            cfg = load_config("synth_pretrain", [f"data.store={store}", f"train.epochs={args.epochs}",
                                                 "train.checkpoint_every=0", "train.device=cpu"])
            args.run = Path(tmp) / "run"
            print(f"\npre-training synth_pretrain for {args.epochs} epochs ...")
            train.pretrain(cfg, args.run)
        run = load_run(args.run)
        trained = run.load_model("last")
        torch.manual_seed(0)
        untrained = HACM(run.config.model, run.config.masking)
        x = clips(store, run.config.model.num_frames, args.clips)
        report(f"synthetic config D={run.config.model.dim}, initialisation", untrained, x, run.config.masking.tau)
        report(f"synthetic config D={run.config.model.dim}, after pre-training ({args.run})", trained, x,
               run.config.masking.tau)


if __name__ == "__main__":
    main()
