"""Training protocols: pre-training, linear probe, fine-tuning (semi-supervised, transfer), kNN.

Each protocol is one plain function that takes a RunConfig and a run directory and reads top to
bottom: data, model, optimiser, (resume), epochs of steps, evaluation, checkpoints. The run
directory is the only output:

    config.yaml            the resolved RunConfig
    metrics.jsonl          one JSON object per line: {"kind": "step" | "epoch" | "knn", ...}
    summary.json           final numbers (best accuracy, last loss, ...)
    checkpoints/last.pt    after every epoch (what --resume continues from)
    checkpoints/best.pt    linprobe/finetune: best test accuracy so far
    checkpoints/epoch_NNNN.pt every train.checkpoint_every epochs and at the last one

Schedules follow MAMP (method.md section 9): the learning rate is set every iteration, linear
warmup then half-cosine to min_lr. Weight decay applies to every tensor of two or more
dimensions (the embeddings and the mask token included) and never to biases or norms, as MAMP's
pre-training and fine-tuning. Fine-tuning scales each encoder layer's lr by
layer_decay^(depth + 1 - layer_id).

Distributed: started by torchrun (RANK / WORLD_SIZE / LOCAL_RANK in the environment), nccl on
GPUs and gloo on CPUs. train.batch_size is the global batch; each rank takes an equal share.
Batch norms in the heads use the statistics of the whole global batch (all ranks), so a DDP run
computes what one process with the same global batch computes (MAMP normalised per GPU).

Reproducibility: data order and augmentation depend only on (seed, epoch, sample); masks come
from a generator seeded with (seed, epoch, step, rank); the global RNG state (dropout, drop path)
is saved in every checkpoint. A run killed and resumed therefore ends with the same weights as
one that ran straight through.

Precision: train.dtype sets the dtype of the parameters and of the inputs (float32, or float64 for
exactness checks); bf16 autocast (train.amp) goes on top of float32 only.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Subset
from tqdm.auto import tqdm

from hacm import checkpoint as ckpt
from hacm.config import RunConfig, to_dict, to_yaml
from hacm.data.dataset import SkeletonDataset
from hacm.data.loader import make_loader
from hacm.data.store import Store
from hacm.errors import ConfigError, HacmError
from hacm.evaluate import (CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, accuracy, autocast, extract_features, knn_predict,
                           new_model, read_metrics, write_predictions)
from hacm.fileio import make_dir, write_text_atomic
from hacm.model import encoder_layer_id

logger = logging.getLogger("hacm.train")

# Keys that may change between a run and its --resume (they do not alter what is computed).
RESUMABLE_CHANGES = {"train.epochs", "train.checkpoint_every", "train.log_every", "train.eval_every", "train.device",
                     "data.num_workers", "data.store"}


# ---------------------------------------------------------------------------------------------
# Processes and devices


@dataclass
class Dist:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    owns_group: bool          # this call initialised the process group (and tears it down)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    if pref == "cuda" and not torch.cuda.is_available():
        raise HacmError("train.device: cuda was asked for, but torch sees no GPU")
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def setup_distributed(device_pref: str) -> Dist:
    """One process, or one rank of a torchrun job (env:// rendezvous)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(0, 1, 0, resolve_device(device_pref), owns_group=False)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
    device = resolve_device(device_pref, local)
    owns = not dist.is_initialized()
    if owns:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return Dist(rank, world, local, device, owns_group=owns)


def teardown_distributed(d: Dist) -> None:
    if d.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: list[float], d: Dist) -> list[float]:
    """Sum plain numbers over ranks (metrics), float64 on CPU for gloo and exactness."""
    if not d.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device if d.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return t.tolist()


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics span the global batch of all DDP ranks.

    Uses the autograd-aware all_reduce of torch.distributed.nn (gloo and nccl alike), two passes
    (mean, then centred variance) for the same numerics as nn.BatchNorm1d.
    """

    def forward(self, x):                                                           # [B, C]
        if not (self.training and dist.is_initialized()):
            return super().forward(x)
        count = torch.full((1,), float(x.shape[0]), dtype=x.dtype, device=x.device)
        sums = dist_nn.all_reduce(torch.cat([x.sum(0), count]))
        n = sums[-1]
        mean = sums[:-1] / n                                                        # [C]
        var = dist_nn.all_reduce(((x - mean) ** 2).sum(0)) / n                      # [C], biased
        if self.track_running_stats:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
                self.num_batches_tracked.add_(1)
        y = (x - mean) / torch.sqrt(var + self.eps)
        return y * self.weight + self.bias if self.affine else y


def globalise_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm1d in `module` by GlobalBatchNorm1d, keeping its state."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm1d:
            g = GlobalBatchNorm1d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            g.load_state_dict(child.state_dict())
            setattr(module, name, g)
        else:
            globalise_batchnorm(child)
    return module


# ---------------------------------------------------------------------------------------------
# Data


def make_dataset(cfg: RunConfig, store: Store, part: str, *, augment: bool) -> SkeletonDataset:
    """The train part (augmented, or evaluation-style for kNN features) or the test part."""
    d = cfg.data
    return SkeletonDataset(
        store, d.benchmark, part, window_size=d.window_size,
        p_interval=d.p_interval_train if augment else d.p_interval_test,
        random_rot=d.random_rot and augment, vel=d.vel, bone=d.bone,
        subset_fraction=d.subset_fraction if part == "train" else None, subset_seed=d.subset_seed,
        subset_balanced=d.subset_balanced, seed=cfg.train.seed)


def local_batch_size(cfg: RunConfig, d: Dist) -> int:
    if cfg.train.batch_size % d.world_size:
        raise ConfigError(f"train.batch_size {cfg.train.batch_size} is the global batch and must be "
                          f"divisible by the {d.world_size} ranks")
    return cfg.train.batch_size // d.world_size


def shard(dataset, d: Dist):
    """This rank's share of an evaluation set: every world_size-th item, no padding, no repeats."""
    return Subset(dataset, range(d.rank, len(dataset), d.world_size)) if d.enabled else dataset


# ---------------------------------------------------------------------------------------------
# Optimisation


def lr_at(step: int, steps_per_epoch: int, cfg: RunConfig) -> float:
    """MAMP's per-iteration schedule: linear warmup, then half-cosine from lr to min_lr."""
    t = cfg.train
    epoch = step / steps_per_epoch
    if epoch < t.warmup_epochs:
        return t.lr * epoch / t.warmup_epochs
    span = max(t.epochs - t.warmup_epochs, 1e-8)
    progress = min((epoch - t.warmup_epochs) / span, 1.0)
    return t.min_lr + (t.lr - t.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def no_weight_decay(p: torch.Tensor) -> bool:
    """Biases and norm parameters, i.e. every tensor of fewer than two dimensions.

    MAMP's rule in both of its optimisers (timm's add_weight_decay with no skip list, and
    param_groups_lrd): the temporal / joint embeddings and the mask token are decayed.
    """
    return p.ndim < 2


def param_groups(model: nn.Module, cfg: RunConfig) -> list[dict]:
    """AdamW groups by (decay?, layer): each carries `lr_scale` for layer-wise lr decay."""
    depth, decay = cfg.model.depth, cfg.train.layer_decay
    groups: dict[tuple[bool, int], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = no_weight_decay(p)
        layer = encoder_layer_id(name, depth) if decay < 1.0 else depth + 1
        g = groups.setdefault((skip, layer), {
            "params": [], "weight_decay": 0.0 if skip else cfg.train.weight_decay,
            "lr_scale": decay ** (depth + 1 - layer)})
        g["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    t = cfg.train
    if cfg.protocol == "linprobe":
        head = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.SGD([{"params": head, "lr_scale": 1.0}], lr=t.lr, momentum=t.momentum,
                               weight_decay=t.weight_decay)
    return torch.optim.AdamW(param_groups(model, cfg), lr=t.lr, betas=t.betas)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for g in optimizer.param_groups:
        g["lr"] = lr * g["lr_scale"]


def mask_generator(cfg: RunConfig, epoch: int, step: int, rank: int) -> torch.Generator:
    """Masking noise for one step: a function of (seed, epoch, step, rank) only."""
    seed = np.random.SeedSequence([cfg.train.seed, epoch, step, rank]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(seed[0]) << 32 | int(seed[1]))


# ---------------------------------------------------------------------------------------------
# Run directory


class RunWriter:
    """metrics.jsonl, summary.json, optional TensorBoard; rank 0 writes, other ranks do nothing."""

    def __init__(self, run_dir: Path, active: bool, keep_before_epoch: int | None):
        self.run_dir, self.active = run_dir, active
        self.tb = None
        if not active:
            return
        path = run_dir / METRICS_FILE
        if keep_before_epoch is not None and path.exists():
            # Resuming: records of the epoch that was cut short would be duplicated; drop them.
            rows = read_metrics(run_dir)
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in rows
                                                 if r.get("epoch", 0) < keep_before_epoch))
        elif path.exists():
            path.unlink()
        try:   # torch.utils.tensorboard raises ImportError when the tensorboard package is missing
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed: metrics go to %s only", path)
        else:
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log(self, record: dict) -> None:
        if not self.active:
            return
        with open(self.run_dir / METRICS_FILE, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None and record["kind"] != "start":   # start: run facts, not curves
            for k, v in record.items():
                if k not in ("kind", "epoch", "step") and isinstance(v, (int, float)):
                    self.tb.add_scalar(f"{record['kind']}/{k}", v, record["step"])

    def summary(self, values: dict) -> None:
        if self.active:
            write_text_atomic(self.run_dir / SUMMARY_FILE, json.dumps(values, indent=2) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        out.update(_flatten(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def prepare_run_dir(cfg: RunConfig, run_dir: Path, resume: bool, d: Dist) -> dict | None:
    """Check the directory, write config.yaml; return the checkpoint to resume from (or None)."""
    last = run_dir / ckpt.CHECKPOINT_DIR / "last.pt"
    state = None
    if resume:
        state = ckpt.load_checkpoint(last)
        saved, now = _flatten(state["config"]), _flatten(to_dict(cfg))
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k) and k not in RESUMABLE_CHANGES)
        if changed:
            raise HacmError(f"{last}: cannot resume with a different config ({', '.join(changed)} changed); "
                            f"only {', '.join(sorted(RESUMABLE_CHANGES))} may change")
    elif last.exists():
        raise HacmError(f"{run_dir} already holds a run ({last}); resume it with --resume or choose "
                        f"another output directory")
    if d.is_main:
        make_dir(run_dir, "run directory")
        write_text_atomic(run_dir / CONFIG_FILE, to_yaml(cfg))
    return state


# ---------------------------------------------------------------------------------------------
# The protocols


def run(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Dispatch on cfg.protocol; returns the run's summary."""
    if cfg.protocol == "knn":
        if resume:
            raise HacmError("knn has nothing to resume: it is a single evaluation")
        return knn(cfg, run_dir)
    return {"pretrain": pretrain, "linprobe": linear_probe, "finetune": finetune}[cfg.protocol](
        cfg, run_dir, resume=resume)


def pretrain(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Self-supervised pre-training of HACM (masked motion prediction + cross-contrast)."""
    _expect(cfg, "pretrain")
    return _fit(cfg, Path(run_dir), resume)


def linear_probe(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Frozen encoder (eval mode) + BatchNorm/Linear head, SGD with cosine lr."""
    _expect(cfg, "linprobe")
    return _fit(cfg, Path(run_dir), resume)


def finetune(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """End-to-end fine-tuning; semi-supervised with data.subset_fraction, transfer with
    train.pretrained from another dataset's run (its head is ignored)."""
    _expect(cfg, "finetune")
    return _fit(cfg, Path(run_dir), resume)


def _expect(cfg: RunConfig, protocol: str) -> None:
    if cfg.protocol != protocol:
        raise ConfigError(f"protocol: this config is for {cfg.protocol!r}, not {protocol!r} "
                          f"(hacm.train.run dispatches on the protocol)")


def build_model(cfg: RunConfig, num_classes: int, d: Dist) -> nn.Module:
    """The protocol's model on the device, with the pre-trained encoder loaded if configured."""
    model = new_model(cfg, num_classes)
    if cfg.train.pretrained is not None:
        report = ckpt.load_pretrained_encoder(model.encoder, cfg.train.pretrained, cfg.model)
        if d.is_main:
            logger.info(ckpt.describe_load(report, cfg.train.pretrained))
    elif cfg.protocol != "pretrain" and d.is_main:
        logger.info("train.pretrained is not set: the encoder is randomly initialised (a baseline)")
    return model.to(d.device, dtype=compute_dtype(cfg))


def compute_dtype(cfg: RunConfig) -> torch.dtype:
    """train.dtype as a torch dtype: the parameters', the inputs' and the logits' (under amp too)."""
    return {"float32": torch.float32, "float64": torch.float64}[cfg.train.dtype]


def _fit(cfg: RunConfig, run_dir: Path, resume: bool) -> dict:
    d = setup_distributed(cfg.train.device)
    try:
        # geoopt's maths are TorchScript functions; the profiling executor re-optimises them after
        # their first calls, which changes backward numerics with the number of calls made in this
        # process. A resumed run would then drift from an uninterrupted one: run them unoptimised.
        with torch.jit.optimized_execution(False):
            return _fit_ranked(cfg, run_dir, resume, d)
    finally:
        teardown_distributed(d)


def _fit_ranked(cfg: RunConfig, run_dir: Path, resume: bool, d: Dist) -> dict:
    t = cfg.train
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)
    state = prepare_run_dir(cfg, run_dir, resume, d)
    if d.enabled:
        dist.barrier()   # config.yaml exists before any rank goes on

    # -- data
    store = Store.open(cfg.data.store)
    train_set = make_dataset(cfg, store, "train", augment=True)
    if len(train_set) == 0:
        raise HacmError(f"{cfg.data.store}: benchmark {cfg.data.benchmark} has no training clips")
    batch = local_batch_size(cfg, d)
    train_loader = make_loader(train_set, batch, train=True, seed=t.seed, num_workers=cfg.data.num_workers,
                               distributed=d.enabled)
    if len(train_loader) == 0:
        raise HacmError(f"train.batch_size {t.batch_size} exceeds the {len(train_set)} training clips")
    classify = cfg.protocol != "pretrain"
    test_loader = None
    if classify:
        test_set = make_dataset(cfg, store, "test", augment=False)
        if len(test_set) == 0:
            raise HacmError(f"{cfg.data.store}: benchmark {cfg.data.benchmark} has no test clips to evaluate on")
        test_loader = make_loader(shard(test_set, d), batch, train=False, num_workers=cfg.data.num_workers)
    dtype = compute_dtype(cfg)
    steps_per_epoch = len(train_loader) if t.max_steps_per_epoch is None else min(len(train_loader),
                                                                                   t.max_steps_per_epoch)

    # -- model and optimiser
    model = build_model(cfg, store.num_classes, d)
    if d.enabled:
        model = globalise_batchnorm(model).to(d.device, dtype)      # the new norms are float32
        ddp = DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    else:
        ddp = model
    optimizer = make_optimizer(model, cfg)
    start_epoch, step, best = 0, 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        ckpt.set_rng_state(state["rng"])
        if d.is_main:
            logger.info("resuming %s at epoch %d, step %d", run_dir, start_epoch, step)
    writer = RunWriter(run_dir, d.is_main, keep_before_epoch=start_epoch if state is not None else None)
    if d.is_main and state is None:
        writer.log({"kind": "start", "epoch": 0, "step": 0, "protocol": cfg.protocol,
                    "train_clips": len(train_set), "world_size": d.world_size,
                    "device": str(d.device), "params": sum(p.numel() for p in model.parameters())})

    def save(name: str, epoch_done: int, last_loss: float) -> None:
        if not d.is_main:
            return
        ckpt.save_checkpoint(run_dir / ckpt.CHECKPOINT_DIR / f"{name}.pt", {
            "format": ckpt.FORMAT, "version": ckpt.VERSION, "protocol": cfg.protocol,
            "config": to_dict(cfg), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "epoch": epoch_done, "step": step, "rng": ckpt.rng_state(),
            "best": best, "class_names": list(store.class_names), "loss": last_loss})

    # -- epochs
    summary: dict = {"protocol": cfg.protocol}
    epochs = tqdm(range(start_epoch, t.epochs), desc=cfg.protocol, unit="epoch", disable=not d.is_main,
                  initial=start_epoch, total=t.epochs)
    try:
        for epoch in epochs:
            train_set.set_epoch(epoch)
            train_loader.sampler.set_epoch(epoch)
            ddp.train()
            sums, clips, tic = {}, 0, time.perf_counter()
            bar = tqdm(total=steps_per_epoch, desc=f"epoch {epoch}", unit="step", leave=False,
                       disable=not d.is_main)
            for i, (x, y) in enumerate(train_loader):
                if i == steps_per_epoch:
                    break
                x = x.to(d.device, dtype, non_blocking=True)
                y = y.to(d.device, non_blocking=True)
                lr = lr_at(step, steps_per_epoch, cfg)
                set_lr(optimizer, lr)
                with autocast(cfg.train.amp, d.device):
                    if classify:
                        loss = F.cross_entropy(ddp(x).to(dtype), y, label_smoothing=t.label_smoothing)
                        parts = {"loss": loss.item()}
                    else:
                        out = ddp(x, generator=mask_generator(cfg, epoch, step, d.rank))
                        loss = out.loss
                        parts = {"loss": loss.item(), "loss_rec": out.loss_rec.item(), "loss_cc": out.loss_cc.item(),
                                 **{f"keep_spread_{c}": v for c, v in out.keep_spread.items()}}
                # The mean over ranks decides for every rank: all stop together on a bad loss.
                parts = dict(zip(parts, (v / d.world_size for v in all_reduce_sum(list(parts.values()), d))))
                batch_loss = parts["loss"]
                if not math.isfinite(batch_loss):
                    # Raised before backward/step: no bad update is taken and last.pt stays untouched.
                    last = run_dir / ckpt.CHECKPOINT_DIR / "last.pt"
                    kept = (f"{last} holds the last good epoch" if last.exists()
                            else "no epoch finished, so there is no checkpoint")
                    raise HacmError(f"non-finite loss ({batch_loss}) at epoch {epoch}, step {step} "
                                    f"(lr {lr:.3g}); the run stopped, {kept}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                step += 1
                for k, v in parts.items():
                    sums[k] = sums.get(k, 0.0) + v
                clips += x.shape[0] * d.world_size
                bar.update(1)
                bar.set_postfix(loss=f"{batch_loss:.4f}", lr=f"{lr:.2e}")
                if step % t.log_every == 0:
                    writer.log({"kind": "step", "epoch": epoch, "step": step, **parts, "lr": lr})
            bar.close()
            seconds = time.perf_counter() - tic
            record = {"kind": "epoch", "epoch": epoch, "step": step,
                      **{k: v / steps_per_epoch for k, v in sums.items()},
                      "lr": lr, "clips_per_s": clips / seconds, "seconds": seconds}
            if classify and ((epoch + 1) % t.eval_every == 0 or epoch + 1 == t.epochs):
                acc, predicted = evaluate_accuracy(ddp, test_loader, cfg, d)
                record.update(acc)
                # MAMP reports the best epoch on the test set: kept as a labelled extra only, it is
                # selection on the test set (the last epoch is hacm's number)
                if best is None or acc["test_acc"] > best["value"]:
                    best = {"metric": "test_acc", "value": acc["test_acc"], "epoch": epoch}
                    save("best", epoch + 1, record["loss"])
                record["best_test_acc"] = best["value"]
                if epoch + 1 == t.epochs and d.is_main:
                    write_predictions(run_dir, test_set.labels, {"pred": predicted})
            writer.log(record)
            epochs.set_postfix(loss=f"{record['loss']:.4f}",
                               **({"acc": f"{record['test_acc']:.3f}"} if "test_acc" in record else {}))
            save("last", epoch + 1, record["loss"])
            if (t.checkpoint_every and (epoch + 1) % t.checkpoint_every == 0) or epoch + 1 == t.epochs:
                save(f"epoch_{epoch + 1:04d}", epoch + 1, record["loss"])
            summary.update({k: v for k, v in record.items() if k != "kind"})
        if best is not None:
            summary.update(best_test_acc=best["value"], best_epoch=best["epoch"])
        summary["epochs"] = t.epochs
        writer.summary(summary)
    finally:
        writer.close()
    return summary


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, loader, cfg: RunConfig, d: Dist) -> tuple[dict, np.ndarray]:
    """Top-1 / top-5 accuracy and mean loss over the test set (this rank's shard, summed over ranks),
    and the top-1 prediction of every test clip in dataset order (the same array on every rank)."""
    model.eval()
    correct1 = correct5 = total = loss_sum = 0.0
    shard_pred = []
    dtype = compute_dtype(cfg)
    for x, y in loader:
        x, y = x.to(d.device, dtype, non_blocking=True), y.to(d.device, non_blocking=True)
        with autocast(cfg.train.amp, d.device):
            logits = model(x).to(dtype)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices                    # [B, 5]
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
        total += y.numel()
        shard_pred.append(top[:, 0].cpu())
    correct1, correct5, total, loss_sum = all_reduce_sum([correct1, correct5, total, loss_sum], d)
    # shard(dataset) gives rank r the items r, r + W, ...: put each rank's predictions back in place
    predicted = np.zeros(int(total), dtype=np.float64)
    predicted[d.rank::d.world_size] = torch.cat(shard_pred).numpy()
    predicted = np.asarray(all_reduce_sum(predicted.tolist(), d), dtype=np.int64)
    return ({"test_acc": correct1 / total, "test_top5": correct5 / total, "test_loss": loss_sum / total},
            predicted)


def knn(cfg: RunConfig, run_dir: str | Path) -> dict:
    """kNN on frozen, pooled encoder features (cosine similarity, weighted votes).

    Train features come from un-augmented clips (the test crop, no rotation). One process does the
    whole evaluation; under torchrun only rank 0 works and writes.
    """
    _expect(cfg, "knn")
    run_dir = Path(run_dir)
    d = setup_distributed(cfg.train.device)
    try:
        if not d.is_main:
            return {}
        torch.manual_seed(cfg.train.seed)
        prepare_run_dir(cfg, run_dir, resume=False, d=d)
        store = Store.open(cfg.data.store)
        model = build_model(cfg, store.num_classes, d)
        feats = {}
        for part in ("train", "test"):
            dataset = make_dataset(cfg, store, part, augment=False)
            feats[part] = extract_features(model, dataset, batch_size=cfg.train.batch_size, device=d.device,
                                           amp=cfg.train.amp, num_workers=cfg.data.num_workers)
        preds = knn_predict(*feats["train"], feats["test"][0], k=cfg.knn.k, temperature=cfg.knn.temperature,
                            num_classes=store.num_classes)
        accs = {k: accuracy(p, feats["test"][1]) for k, p in preds.items()}
        write_predictions(run_dir, feats["test"][1], {f"knn{k}": p for k, p in preds.items()})
        writer = RunWriter(run_dir, True, keep_before_epoch=None)
        record = {"kind": "knn", "epoch": 0, "step": 0, "pretrained": cfg.train.pretrained,
                  "train_clips": len(feats["train"][1]), "test_clips": len(feats["test"][1]),
                  **{f"knn{k}_acc": a for k, a in accs.items()}}
        writer.log(record)
        summary = {"protocol": "knn", **{k: v for k, v in record.items() if k != "kind"}}
        writer.summary(summary)
        writer.close()
        return summary
    finally:
        teardown_distributed(d)


def config_replace(cfg: RunConfig, **sections) -> RunConfig:
    """A copy of cfg with some sections' fields replaced: config_replace(cfg, train={"epochs": 2})."""
    return dataclasses.replace(cfg, **{name: dataclasses.replace(getattr(cfg, name), **values)
                                       for name, values in sections.items()})
