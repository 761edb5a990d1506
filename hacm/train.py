"""Training protocols: pre-training, linear probe, fine-tuning (semi-supervised, transfer), kNN.

`run(cfg, run_dir)` runs the protocol of cfg. Pre-training, linear probe and fine-tuning read top to
bottom in `_fit`: processes, data, model and optimiser, resume, then epochs of `train_one_epoch`,
`evaluate` (classifiers) and checkpoints. The run directory (hacm.rundir, docs/rundir.md) is the only
output. Schedules, parameter groups and weight decay are hacm.optim's; processes, devices and
precision hacm.distributed's.

Reproducibility: data order and augmentation depend only on (seed, epoch, sample); masks come
from a generator seeded with (seed, epoch, step, rank); the global RNG state (dropout, drop path)
is saved in every checkpoint. A run killed and resumed therefore ends with the same weights as
one that ran straight through. `train.dtype: float64` makes runs comparable to float64 precision
(a DDP run against one process); bf16 autocast (`train.amp`) goes on top of float32 only.
"""
from __future__ import annotations

import logging
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hacm import checkpoint, distributed, lock, rundir
from hacm.config import RunConfig, load_config, replace
from hacm.data.dataset import SkeletonDataset
from hacm.data.loader import make_loader
from hacm.data.store import Store
from hacm.datasets import make_dataset
from hacm.distributed import Process, all_reduce_sum, autocast, compute_dtype
from hacm.errors import ConfigError, HacmError
from hacm.evaluate import accuracy, chance_levels, extract_features, knn_predict
from hacm.features import sample_clips
from hacm.optim import lr_at, make_optimizer, set_lr
from hacm.progress import progress_bar

logger = logging.getLogger("hacm.train")


def run(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
    """Run cfg.protocol into run_dir (resume: continue from its checkpoints/last.pt); the summary."""
    if cfg.protocol == "knn":
        if resume:
            raise HacmError("knn has nothing to resume: it is a single evaluation")
        return knn(cfg, run_dir)
    proc = distributed.start(cfg.train.device)
    try:
        cfg = resolve_precision(cfg, Path(run_dir), resume, proc.device)
        # geoopt's maths are TorchScript functions; the profiling executor re-optimises them after
        # their first calls, which changes backward numerics with the number of calls made in this
        # process. A resumed run would then drift from an uninterrupted one: run them unoptimised.
        with _run_dir_held(Path(run_dir), proc), torch.jit.optimized_execution(False), _float32_products(cfg, proc):
            return _fit(cfg, Path(run_dir), resume, proc)
    finally:
        distributed.stop(proc)


def resolve_precision(cfg: RunConfig, run_dir: Path, resume: bool, device: torch.device) -> RunConfig:
    """cfg with train.amp "auto" resolved for `device` (hacm.distributed.resolve_amp): what the run
    computes in, and what its config.yaml records. A resumed run keeps the precision it started
    with (its config.yaml's), on whichever device it resumes: one run, one precision."""
    t = cfg.train
    if t.amp != "auto":
        return cfg
    recorded = run_dir / rundir.CONFIG_FILE
    amp = (load_config(recorded).train.amp if resume and recorded.is_file()
           else distributed.resolve_amp(t.amp, t.dtype, device))
    if amp == "bf16" and device.type == "cuda" and not distributed.bf16_native(device):
        raise HacmError(f"{recorded}: this run computes in bf16 (train.amp auto resolved to bf16 when it "
                        f"started), but {torch.cuda.get_device_name(device)} has no native bf16; resume it on "
                        f"a GPU that has (compute capability 8.0 or later)")
    return replace(cfg, train={"amp": amp})


def _float32_products(cfg: RunConfig, proc: Process):
    """TF32 for the run's CUDA float32 matmuls and convolutions when train.tf32 (and float32), else off."""
    return distributed.float32_products(distributed.tf32_active(cfg.train.tf32, cfg.train.dtype, proc.device))


@contextmanager
def _run_dir_held(run_dir: Path, proc: Process):
    """Rank 0 holds the run directory's lock (hacm.lock) for the whole run; under torchrun every
    rank learns whether it got it, so a refused run stops on all ranks instead of hanging."""
    refused = None
    if proc.is_main:
        try:
            lock.acquire(run_dir, "run directory")
        except HacmError as e:
            refused = e
    if all_reduce_sum([float(refused is not None)], proc)[0] and refused is None:
        raise HacmError(f"{run_dir}: rank 0 could not lock the run directory (see its error)")
    if refused is not None:
        raise refused
    try:
        yield
    finally:
        if proc.is_main:
            lock.release(run_dir)


def _protocol(name: str, doc: str):
    def protocol(cfg: RunConfig, run_dir: str | Path, resume: bool = False) -> dict:
        if cfg.protocol != name:
            raise ConfigError(f"protocol: this config is for {cfg.protocol!r}, not {name!r} "
                              f"(hacm.train.run runs the config's own protocol)")
        return run(cfg, run_dir, resume)
    protocol.__name__, protocol.__doc__ = name, doc
    return protocol


pretrain = _protocol("pretrain", "Self-supervised pre-training of HACM (masked motion prediction + cross-contrast).")
linear_probe = _protocol("linprobe", "Frozen encoder (eval mode) + BatchNorm/Linear head, SGD with cosine lr.")
finetune = _protocol("finetune", "End-to-end fine-tuning; semi-supervised with data.subset_fraction, transfer "
                                 "with train.pretrained from another dataset's run (its head is ignored).")


def mask_generator(cfg: RunConfig, epoch: int, step: int, rank: int) -> torch.Generator:
    """Masking noise for one step: a function of (seed, epoch, step, rank) only."""
    seed = np.random.SeedSequence([cfg.train.seed, epoch, step, rank]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(seed[0]) << 32 | int(seed[1]))


# ---------------------------------------------------------------------------------------------
# The pieces of a run


@dataclass
class _Data:
    store: Store
    train_set: SkeletonDataset
    train_loader: torch.utils.data.DataLoader
    test_set: SkeletonDataset | None           # classifiers only
    test_loader: torch.utils.data.DataLoader | None
    steps_per_epoch: int


def _data(cfg: RunConfig, proc: Process) -> _Data:
    t, store = cfg.train, Store.open(cfg.data.store)
    train_set = make_dataset(cfg, store, "train", augment=True)
    if len(train_set) == 0:
        raise HacmError(f"{cfg.data.store}: benchmark {cfg.data.benchmark} has no training clips")
    batch = distributed.local_batch_size(t.batch_size, proc)
    train_loader = make_loader(train_set, batch, train=True, seed=t.seed, num_workers=cfg.data.num_workers,
                               distributed=proc.distributed)
    if len(train_loader) == 0:
        raise HacmError(f"train.batch_size {t.batch_size} exceeds the {len(train_set)} training clips")
    test_set = test_loader = None
    if cfg.protocol != "pretrain":
        test_set = make_dataset(cfg, store, "test", augment=False)
        if len(test_set) == 0:
            raise HacmError(f"{cfg.data.store}: benchmark {cfg.data.benchmark} has no test clips to evaluate on")
        test_loader = make_loader(distributed.shard(test_set, proc), batch, train=False,
                                  num_workers=cfg.data.num_workers)
    steps = len(train_loader) if t.max_steps_per_epoch is None else min(len(train_loader), t.max_steps_per_epoch)
    return _Data(store, train_set, train_loader, test_set, test_loader, steps)


def _model(cfg: RunConfig, num_classes: int, proc: Process) -> nn.Module:
    """The protocol's model on the device, with the pre-trained encoder when configured."""
    model = checkpoint.build_model(cfg, num_classes)
    if cfg.train.pretrained is not None:
        report = checkpoint.load_pretrained_encoder(model.encoder, cfg.train.pretrained, cfg.model)
        if proc.is_main:
            logger.info(checkpoint.describe_load(report, cfg.train.pretrained))
    elif cfg.protocol != "pretrain" and proc.is_main:
        logger.info("train.pretrained is not set: the encoder is randomly initialised (a baseline)")
    model = model.to(proc.device, dtype=compute_dtype(cfg.train.dtype))
    if cfg.train.compile:
        compile_transformers(model)
    return model


def compile_transformers(model: nn.Module) -> None:
    """train.compile: torch.compile, in place, the encoder's blocks (`forward_tokens`) and the
    pre-training decoder (`decode`): the bulk of a step's FLOPs. The masking (TorchScript geometry,
    a seeded generator) and the heads stay eager; the state dict and checkpoints are unchanged."""
    model.encoder.forward_tokens = torch.compile(model.encoder.forward_tokens)
    if hasattr(model, "decode"):
        model.decode = torch.compile(model.decode)


def _wrapped(model: nn.Module, proc: Process) -> nn.Module:
    """What the steps call: the model, or under DDP its wrapper (batch norms over the global batch)."""
    if not proc.distributed:
        return model
    return DistributedDataParallel(distributed.globalise_batchnorm(model),
                                   device_ids=[proc.device.index] if proc.device.type == "cuda" else None)


def _step_loss(ddp: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: RunConfig, epoch: int, step: int,
               proc: Process) -> tuple[torch.Tensor, dict]:
    """One step's loss and its logged parts (pre-training: reconstruction, contrast, keep spreads)."""
    with autocast(cfg.train.amp, proc.device):
        if cfg.protocol != "pretrain":
            loss = F.cross_entropy(ddp(x).to(x.dtype), y, label_smoothing=cfg.train.label_smoothing)
            return loss, {"loss": loss.item()}
        out = ddp(x, generator=mask_generator(cfg, epoch, step, proc.rank))
    return out.loss, {"loss": out.loss.item(), "loss_rec": out.loss_rec.item(), "loss_cc": out.loss_cc.item(),
                      **{f"keep_spread_{c}": v for c, v in out.keep_spread.items()}}


def train_one_epoch(ddp: nn.Module, optimizer: torch.optim.Optimizer, data: _Data, cfg: RunConfig, epoch: int,
                    step: int, proc: Process, writer: rundir.RunWriter, run_dir: Path) -> tuple[int, dict]:
    """One epoch of optimiser steps; returns the next step and the epoch's metrics record."""
    dtype = compute_dtype(cfg.train.dtype)
    data.train_set.set_epoch(epoch)
    data.train_loader.sampler.set_epoch(epoch)
    ddp.train()
    sums, clips, tic = {}, 0, time.perf_counter()
    bar = progress_bar(total=data.steps_per_epoch, desc=f"epoch {epoch}", unit="step", leave=False,
                       disable=not proc.is_main)
    for i, (x, y) in enumerate(data.train_loader):
        if i == data.steps_per_epoch:
            break
        x, y = x.to(proc.device, dtype, non_blocking=True), y.to(proc.device, non_blocking=True)
        lr = lr_at(step, data.steps_per_epoch, cfg)
        set_lr(optimizer, lr)
        loss, parts = _step_loss(ddp, x, y, cfg, epoch, step, proc)
        # The mean over ranks decides for every rank: all stop together on a bad loss.
        parts = dict(zip(parts, (v / proc.world_size for v in all_reduce_sum(list(parts.values()), proc))))
        if not math.isfinite(parts["loss"]):
            # Raised before backward/step: no bad update is taken and last.pt stays untouched.
            last = run_dir / checkpoint.CHECKPOINT_DIR / "last.pt"
            kept = f"{last} holds the last good epoch" if last.exists() else "no epoch finished, so there is no checkpoint"
            raise HacmError(f"non-finite loss ({parts['loss']}) at epoch {epoch}, step {step} "
                            f"(lr {lr:.3g}); the run stopped, {kept}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        step += 1
        for k, v in parts.items():
            sums[k] = sums.get(k, 0.0) + v
        clips += x.shape[0] * proc.world_size
        bar.update(1)
        bar.set_postfix(loss=f"{parts['loss']:.4f}", lr=f"{lr:.2e}")
        if step % cfg.train.log_every == 0:
            writer.log({"kind": "step", "epoch": epoch, "step": step, **parts, "lr": lr})
    bar.close()
    seconds = time.perf_counter() - tic
    return step, {"kind": "epoch", "epoch": epoch, "step": step,
                  **{k: v / data.steps_per_epoch for k, v in sums.items()},
                  "lr": lr, "clips_per_s": clips / seconds, "seconds": seconds}


@torch.no_grad()
def evaluate(model: nn.Module, loader, cfg: RunConfig, proc: Process) -> tuple[dict, np.ndarray, np.ndarray]:
    """Top-1 / top-5 accuracy and mean loss over the test set (this rank's shard, summed over ranks),
    the top-1 prediction [N] and the softmax scores [N, C] of every test clip in dataset order (the
    same arrays on every rank)."""
    model.eval()
    correct1 = correct5 = total = loss_sum = 0.0
    shard_pred, shard_scores = [], []
    dtype = compute_dtype(cfg.train.dtype)
    for x, y in loader:
        x, y = x.to(proc.device, dtype, non_blocking=True), y.to(proc.device, non_blocking=True)
        with autocast(cfg.train.amp, proc.device):
            logits = model(x).to(dtype)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices                    # [B, 5]
        correct1 += (top[:, 0] == y).sum().item()
        correct5 += (top == y[:, None]).any(1).sum().item()
        total += y.numel()
        shard_pred.append(top[:, 0].cpu())
        shard_scores.append(logits.float().softmax(1).cpu())
    correct1, correct5, total, loss_sum = all_reduce_sum([correct1, correct5, total, loss_sum], proc)
    # shard(dataset) gives rank r the items r, r + W, ...: put each rank's predictions back in place
    predicted = np.zeros(int(total), dtype=np.float64)
    predicted[proc.rank::proc.world_size] = torch.cat(shard_pred).numpy()
    predicted = np.asarray(all_reduce_sum(predicted.tolist(), proc), dtype=np.int64)
    scores = torch.cat(shard_scores).numpy()
    placed = np.zeros((int(total), scores.shape[1]), dtype=np.float64)
    placed[proc.rank::proc.world_size] = scores
    scores = np.asarray(all_reduce_sum(placed.ravel().tolist(), proc), dtype=np.float32).reshape(placed.shape)
    return ({"test_acc": correct1 / total, "test_top5": correct5 / total, "test_loss": loss_sum / total},
            predicted, scores)


# ---------------------------------------------------------------------------------------------
# Pre-training, linear probe, fine-tuning


def _fit(cfg: RunConfig, run_dir: Path, resume: bool, proc: Process) -> dict:
    t = cfg.train
    torch.manual_seed(t.seed)
    np.random.seed(t.seed)
    state = rundir.prepare(cfg, run_dir, resume, proc.is_main)
    distributed.barrier(proc)   # config.yaml exists before any rank goes on
    data = _data(cfg, proc)
    model = _model(cfg, data.store.num_classes, proc)
    ddp = _wrapped(model, proc)
    optimizer = make_optimizer(model, cfg)
    start_epoch, step, best = 0, 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, step, best = state["epoch"], state["step"], state["best"]
        checkpoint.set_rng_state(state["rng"])
        if proc.is_main:
            logger.info("resuming %s at epoch %d, step %d", run_dir, start_epoch, step)
    writer = rundir.RunWriter(run_dir, proc.is_main, resume_from=(start_epoch, step) if state is not None else None,
                              tensorboard=t.tensorboard)
    if state is None:
        writer.log({"kind": "start", "epoch": 0, "step": 0, "protocol": cfg.protocol,
                    "train_clips": len(data.train_set), "world_size": proc.world_size,
                    "device": str(proc.device), "params": sum(p.numel() for p in model.parameters()),
                    "amp": t.amp, "tf32": distributed.tf32_active(t.tf32, t.dtype, proc.device)})

    def save(name: str, epoch_done: int, loss: float) -> None:
        if proc.is_main:
            checkpoint.save_checkpoint(run_dir / checkpoint.CHECKPOINT_DIR / f"{name}.pt", checkpoint.training_state(
                cfg, model, optimizer, epoch=epoch_done, step=step, best=best,
                class_names=data.store.class_names, loss=loss))

    summary: dict = {"protocol": cfg.protocol}
    if state is not None:   # a resumed run's summary starts from its last finished epoch
        done = [r for r in rundir.read_metrics(run_dir) if r.get("kind") == "epoch"]
        summary.update({k: v for k, v in (done[-1] if done else {}).items() if k != "kind"})
    epochs = progress_bar(range(start_epoch, t.epochs), desc=cfg.protocol, unit="epoch", disable=not proc.is_main,
                  initial=start_epoch, total=t.epochs)
    try:
        for epoch in epochs:
            step, record = train_one_epoch(ddp, optimizer, data, cfg, epoch, step, proc, writer, run_dir)
            last_epoch = epoch + 1 == t.epochs
            if data.test_loader is not None and ((epoch + 1) % t.eval_every == 0 or last_epoch):
                acc, predicted, scores = evaluate(ddp, data.test_loader, cfg, proc)
                record.update(acc)
                # MAMP reports the best epoch on the test set: kept as a labelled extra only, it is
                # selection on the test set (the last epoch is hacm's number)
                if best is None or acc["test_acc"] > best["value"]:
                    best = {"metric": "test_acc", "value": acc["test_acc"], "epoch": epoch}
                    save("best", epoch + 1, record["loss"])
                record["best_test_acc"] = best["value"]
                if last_epoch:
                    writer.predictions(data.test_set.labels, {"pred": predicted}, scores)
            writer.log(record)
            epochs.set_postfix(loss=f"{record['loss']:.4f}",
                               **({"acc": f"{record['test_acc']:.3f}"} if "test_acc" in record else {}))
            save("last", epoch + 1, record["loss"])
            if (t.checkpoint_every and (epoch + 1) % t.checkpoint_every == 0) or last_epoch:
                save(f"epoch_{epoch + 1:04d}", epoch + 1, record["loss"])
            summary.update({k: v for k, v in record.items() if k != "kind"})
        if best is not None:
            summary.update(best_test_acc=best["value"], best_epoch=best["epoch"])
        summary["epochs"] = t.epochs
        writer.summary(summary)
    finally:
        writer.close()
    return summary


# ---------------------------------------------------------------------------------------------
# kNN


def knn(cfg: RunConfig, run_dir: str | Path) -> dict:
    """kNN on frozen, pooled encoder features (cosine similarity, weighted votes).

    Train features come from un-augmented clips (the test crop, no rotation). One process does the
    whole evaluation; under torchrun only rank 0 works and writes.
    """
    run_dir = Path(run_dir)
    proc = distributed.start(cfg.train.device)
    try:
        if not proc.is_main:
            return {}
        with lock.hold(run_dir, "run directory"):
            return _knn(cfg, run_dir, proc)
    finally:
        distributed.stop(proc)


def _knn(cfg: RunConfig, run_dir: Path, proc: Process) -> dict:
    torch.manual_seed(cfg.train.seed)
    cfg = resolve_precision(cfg, run_dir, False, proc.device)
    rundir.prepare(cfg, run_dir, resume=False, is_main=True)
    store = Store.open(cfg.data.store)
    model = _model(cfg, store.num_classes, proc)
    sets = {"train": sample_clips(make_dataset(cfg, store, "train", augment=False), cfg.knn.train_clips,
                                  cfg.train.seed, "knn.train_clips"),
            "test": make_dataset(cfg, store, "test", augment=False)}
    with _float32_products(cfg, proc):
        feats = {part: extract_features(model, sets[part], batch_size=cfg.train.batch_size, device=proc.device,
                                        amp=cfg.train.amp, num_workers=cfg.data.num_workers)
                 for part in ("train", "test")}
    preds = knn_predict(*feats["train"], feats["test"][0], k=cfg.knn.k, temperature=cfg.knn.temperature,
                        num_classes=store.num_classes)
    writer = rundir.RunWriter(run_dir, True, tensorboard=cfg.train.tensorboard)
    writer.predictions(feats["test"][1], {f"knn{k}": p for k, p in preds.items()})
    record = {"kind": "knn", "epoch": 0, "step": 0, "pretrained": cfg.train.pretrained,
              "train_clips": len(feats["train"][1]), "test_clips": len(feats["test"][1]),
              "chance_acc": chance_levels(feats["test"][1])["majority"],
              **{f"knn{k}_acc": accuracy(p, feats["test"][1]) for k, p in preds.items()}}
    writer.log(record)
    summary = {"protocol": "knn", **{k: v for k, v in record.items() if k != "kind"}}
    writer.summary(summary)
    writer.close()
    return summary
