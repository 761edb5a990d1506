"""Training protocols end to end on a tiny, learnable store (hacm.train).

`make_toy_store` is shared by the other training tests (test_resume, test_ddp, test_evaluate).
"""
from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from hacm import optim, train
from hacm.checkpoint import build_model
from hacm.config import from_dict, replace
from hacm.data.store import SampleRecord, Store, StoreWriter
from hacm.datasets import make_dataset
from hacm.errors import ConfigError, HacmError
from hacm.evaluate import predict
from hacm.rundir import load_run, read_predictions
from hacm.skeleton import NUM_JOINTS

# Body parts that move in the toy classes (NTU joint indices).
_PARTS = {"left_arm": (5, 6, 7, 21, 22), "right_arm": (9, 10, 11, 23, 24), "legs": (13, 14, 15, 17, 18, 19)}


def make_toy_store(path, *, clips_per_class: int = 30, seed: int = 0, test_fraction: float = 1 / 3):
    """A store whose 6 classes differ only in how a body part moves (which part, how fast).

    Every clip has its own body shape, phase, amplitude and recording length, so a classifier has to
    look at motion rather than at the pose; the classes are learnable but not trivial.
    """
    rng = np.random.default_rng(seed)
    rest = rng.normal(0, 0.5, (NUM_JOINTS, 3)).astype(np.float32)
    classes = [(part, freq) for part in _PARTS for freq in (0.5, 1.5)]
    names = [f"{part}_{freq}hz" for part, freq in classes]
    writer = StoreWriter(path, dataset="synth", class_names=names)
    train_idx, test_idx = [], []
    with writer:
        for c, (part, freq) in enumerate(classes):
            direction = rng.normal(0, 1, 3)
            direction /= np.linalg.norm(direction)
            for k in range(clips_per_class):
                T = int(rng.integers(64, 90))
                t = np.arange(T, dtype=np.float32) / 30.0
                body = rest + rng.normal(0, 0.1, rest.shape)
                frames = np.repeat(body[None], T, 0)                                  # [T, 25, 3]
                wave = rng.uniform(0.6, 1.0) * np.sin(2 * math.pi * freq * t + rng.uniform(0, 2 * math.pi))
                frames[:, list(_PARTS[part])] += wave[:, None, None] * direction
                frames += rng.normal(0, 0.02, frames.shape)
                i = writer.add(SampleRecord(f"toy{c:02d}_{k:03d}", c, frames[None].astype(np.float32),
                                            performer=k + 1))
                (test_idx if k < clips_per_class * test_fraction else train_idx).append(i)
        return writer.finish({"synth-xsub": {"train": np.array(train_idx), "test": np.array(test_idx)}})


def toy_config(store, protocol: str = "pretrain", **sections) -> "train.RunConfig":
    """A tiny model over make_toy_store data: 24 frames, 6 time patches, width 32, 2 blocks."""
    d = {
        "protocol": protocol,
        "data": {"store": str(store), "benchmark": "synth-xsub", "window_size": 24, "num_workers": 0},
        "model": {"num_frames": 24, "t_patch": 4, "dim": 32, "depth": 2, "heads": 2, "decoder_dim": 32,
                  "decoder_depth": 1, "drop_path": 0.0},
        "masking": {"mask_ratio": 0.75},
        "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 16, "checkpoint_every": 1, "log_every": 2,
                  "device": "cpu"},
    }
    for name, values in sections.items():
        d[name] = {**d.get(name, {}), **values} if isinstance(values, dict) else values
    return from_dict(d)


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory):
    return make_toy_store(tmp_path_factory.mktemp("toy") / "store", clips_per_class=12)


def test_lr_schedule_warmup_then_half_cosine(toy_store):
    cfg = toy_config(toy_store.path, train={"epochs": 10, "warmup_epochs": 2, "lr": 1e-3, "min_lr": 5e-4})
    steps = 5
    assert optim.lr_at(0, steps, cfg) == 0.0
    assert optim.lr_at(5, steps, cfg) == pytest.approx(5e-4)          # halfway through warmup
    assert optim.lr_at(10, steps, cfg) == pytest.approx(1e-3)         # peak
    assert optim.lr_at(30, steps, cfg) == pytest.approx(7.5e-4)       # half of the cosine
    assert optim.lr_at(50, steps, cfg) == pytest.approx(5e-4)         # end
    lrs = [optim.lr_at(s, steps, cfg) for s in range(10, 51)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_weight_decay_and_layer_decay_groups(toy_store):
    cfg = toy_config(toy_store.path, "finetune", train={"layer_decay": 0.5, "weight_decay": 0.05})
    model = build_model(cfg, 6)
    groups = optim.param_groups(model, cfg)
    by_param = {id(p): g for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    for name in ("encoder.blocks.0.norm1.weight", "encoder.blocks.1.attn.qkv.bias", "head.fc1.bias",
                 "head.bn.weight"):
        assert by_param[id(named[name])]["weight_decay"] == 0.0, name
    for name in ("encoder.blocks.0.attn.qkv.weight", "head.fc1.weight", "encoder.joints_embed.proj.weight",
                 "encoder.temp_embed", "encoder.pos_embed"):
        assert by_param[id(named[name])]["weight_decay"] == 0.05, name
    # depth 2: embeddings layer 0 -> 0.5^3, block 1 -> 0.5^1, head -> 1
    assert by_param[id(named["encoder.joints_embed.proj.weight"])]["lr_scale"] == pytest.approx(0.125)
    assert by_param[id(named["encoder.blocks.1.mlp.fc1.weight"])]["lr_scale"] == pytest.approx(0.5)
    assert by_param[id(named["head.fc2.weight"])]["lr_scale"] == 1.0
    assert sum(len(g["params"]) for g in groups) == len([p for p in model.parameters() if p.requires_grad])


_BLOCK_MATRICES = ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight")


@pytest.mark.parametrize("protocol", ["pretrain", "finetune"])
def test_weight_decay_follows_mamp_every_matrix_and_embedding(toy_store, protocol):
    # MAMP (timm add_weight_decay in pre-training, param_groups_lrd in fine-tuning) decays every
    # tensor of two or more dimensions: the embeddings and the mask token too, no bias, no norm.
    cfg = toy_config(toy_store.path, protocol, train={"weight_decay": 0.05})
    model = build_model(cfg, 6)
    decay = {id(p): g["weight_decay"] for g in optim.param_groups(model, cfg) for p in g["params"]}
    decayed = {name for name, p in model.named_parameters() if decay[id(p)] == 0.05}
    assert all(decay[id(p)] == 0.0 for name, p in model.named_parameters() if name not in decayed)
    expected = {"encoder.joints_embed.proj.weight", "encoder.temp_embed", "encoder.pos_embed"}
    expected |= {f"encoder.blocks.{i}.{m}" for i in range(cfg.model.depth) for m in _BLOCK_MATRICES}
    if protocol == "pretrain":
        expected |= {"decoder_embed.weight", "mask_token", "decoder_temp_embed", "decoder_pos_embed",
                     "decoder_pred.weight"}
        expected |= {f"decoder_blocks.{i}.{m}" for i in range(cfg.model.decoder_depth) for m in _BLOCK_MATRICES}
    else:
        expected |= {"head.fc1.weight", "head.fc2.weight"}
    assert decayed == expected


def test_pretrain_lowers_the_loss_and_writes_the_run_directory(toy_store, tmp_path):
    cfg = toy_config(toy_store.path, train={"epochs": 6, "warmup_epochs": 1, "lr": 2e-3, "min_lr": 1e-4,
                                            "batch_size": 8})
    summary = train.pretrain(cfg, tmp_path / "pt")
    run = load_run(tmp_path / "pt")
    losses = [r["loss"] for r in run.rows("epoch")]
    assert len(losses) == 6
    assert losses[-1] < 0.8 * losses[0], losses
    assert summary["loss"] == pytest.approx(losses[-1])
    assert {"last", "epoch_0001", "epoch_0006"} <= set(run.checkpoints)
    assert run.config == replace(cfg, train={"amp": "off"})       # train.amp auto, as resolved on the CPU
    steps = run.rows("step")
    # every 2nd step of 6 epochs of 6 steps (48 clips, batch 8), at the lr the schedule gave that step
    assert [r["step"] for r in steps] == list(range(2, 37, 2)) and all(math.isfinite(r["loss"]) for r in steps)
    assert [r["lr"] for r in steps] == [optim.lr_at(r["step"] - 1, 6, cfg) for r in steps]   # JSON keeps floats
    # clips / seconds * seconds: two roundings off the clip count
    assert all(r["clips_per_s"] * r["seconds"] == pytest.approx(48, rel=1e-12) for r in run.rows("epoch"))
    assert json.loads((tmp_path / "pt" / "summary.json").read_text())["epochs"] == 6


def test_semi_supervised_subset_and_bf16(toy_store, tmp_path):
    # a uniform 25 % of the 48 training clips: int(48 * 0.25) = 12, the same on every rank
    cfg = toy_config(toy_store.path, "finetune", data={"subset_fraction": 0.25, "subset_seed": 3},
                     train={"epochs": 1, "warmup_epochs": 0, "batch_size": 4, "amp": "bf16"})
    summary = train.finetune(cfg, tmp_path / "semi")
    start = load_run(tmp_path / "semi").rows("start")[0]
    assert start["train_clips"] == 12 and summary["step"] == 3
    assert math.isfinite(summary["loss"])
    # test_acc is the accuracy of the saved model's predictions on the test part, recomputed here
    # with the same batches under bf16; ties between bf16 logits are broken as the loop breaks them
    # (first of top-k).
    test_set = make_dataset(cfg, Store.open(cfg.data.store), "test", augment=False)
    logits, labels = predict(tmp_path / "semi", test_set, batch_size=4, amp="bf16")
    first = torch.from_numpy(logits).topk(min(5, logits.shape[1]), dim=1).indices[:, 0].numpy()
    assert len(labels) == 24 and summary["test_acc"] == pytest.approx(np.mean(first == labels), abs=1e-12)
    # predictions.npz keeps each clip's softmax scores (what `hacm ensemble` fuses), ranked as `pred`
    saved = read_predictions(tmp_path / "semi")
    assert saved["scores"].shape == (24, logits.shape[1]) and saved["scores"].dtype == np.float32
    np.testing.assert_allclose(saved["scores"].sum(1), 1.0, atol=1e-5)
    assert (np.take_along_axis(saved["scores"], saved["pred"][:, None], 1)[:, 0] == saved["scores"].max(1)).all()


def test_finetune_loss_is_label_smoothed(toy_store, tmp_path):
    # Same seed, model and first batch: the smoothed cross-entropy (1 - s) * CE + s * mean_c(-log p_c)
    # is affine in s, so the first step's loss at s = 0.25 is the mean of those at 0 and 0.5.
    first = {}
    for s in (0.0, 0.25, 0.5):
        cfg = toy_config(toy_store.path, "finetune", train={"epochs": 1, "warmup_epochs": 0, "max_steps_per_epoch": 1,
                                                          "log_every": 1, "head_dropout": 0.0,
                                                          "label_smoothing": s})
        train.finetune(cfg, tmp_path / f"s{s}")
        first[s] = load_run(tmp_path / f"s{s}").rows("step")[0]["loss"]
    assert first[0.0] != pytest.approx(first[0.5], rel=1e-3)
    assert first[0.25] == pytest.approx((first[0.0] + first[0.5]) / 2, rel=1e-5)


def test_a_run_directory_is_not_overwritten(toy_store, tmp_path):
    cfg = toy_config(toy_store.path, train={"epochs": 1, "max_steps_per_epoch": 1})
    train.pretrain(cfg, tmp_path / "run")
    with pytest.raises(HacmError, match="already holds a run"):
        train.pretrain(cfg, tmp_path / "run")


def _tensorboard_scalars(run_dir) -> dict[tuple[str, int], list[float]]:
    """(tag, step) -> every value TensorBoard shows there (after its purges), read with its own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})   # 0: keep all
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            out.setdefault((tag, event.step), []).append(event.value)
    return out


def _metrics_as_scalars(run_dir) -> dict[tuple[str, int], list[float]]:
    """What the TensorBoard events must hold: every number of every step / epoch record of metrics.jsonl."""
    out = {}
    for r in load_run(run_dir).metrics:
        if r["kind"] == "start":
            continue
        for k, v in r.items():
            if k not in ("kind", "epoch", "step") and isinstance(v, (int, float)):
                out.setdefault((f"{r['kind']}/{k}", r["step"]), []).append(v)
    return out


def test_tensorboard_events_equal_the_metrics_and_a_resume_adds_only_later_steps(toy_store, tmp_path,
                                                                                    monkeypatch):
    cfg = toy_config(toy_store.path, train={"epochs": 3, "max_steps_per_epoch": 2, "batch_size": 8,
                                            "log_every": 1})
    real_lr_at = train.lr_at

    def killed_in_epoch_2(step, *args):
        if step == 5:   # epoch 2 (steps 5, 6) has logged step 5 when the job dies
            raise KeyboardInterrupt
        return real_lr_at(step, *args)
    monkeypatch.setattr(train, "lr_at", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.pretrain(cfg, tmp_path / "run")
    assert ("step/loss", 5) in _tensorboard_scalars(tmp_path / "run")       # the step that will be redone
    monkeypatch.undo()
    train.pretrain(cfg, tmp_path / "run", resume=True)

    events, metrics = _tensorboard_scalars(tmp_path / "run"), _metrics_as_scalars(tmp_path / "run")
    assert events.keys() == metrics.keys()
    for key, values in metrics.items():   # one value per (tag, step): nothing was logged twice
        assert len(events[key]) == len(values) == 1 and events[key][0] == pytest.approx(values[0], rel=1e-6), key
    tags = {tag for tag, _ in events}
    assert {"step/loss", "step/loss_rec", "step/loss_cc", "step/lr", "epoch/loss", "epoch/loss_rec",
            "epoch/loss_cc", "epoch/lr", "epoch/clips_per_s"} <= tags
    assert any(t.startswith("epoch/keep_spread_") for t in tags)
    assert sorted(s for t, s in events if t == "step/loss") == [1, 2, 3, 4, 5, 6]
    assert sorted(s for t, s in events if t == "epoch/loss") == [2, 4, 6]


def test_tensorboard_off_or_missing_leaves_metrics_jsonl_only(toy_store, tmp_path, monkeypatch):
    cfg = toy_config(toy_store.path, train={"epochs": 1, "max_steps_per_epoch": 2, "batch_size": 8,
                                            "log_every": 1, "tensorboard": False})
    train.pretrain(cfg, tmp_path / "off")
    assert not (tmp_path / "off" / "tensorboard").exists() and load_run(tmp_path / "off").rows("step")
    # tensorboard not installed (the import fails): the run goes on without events
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    train.pretrain(replace(cfg, train={"tensorboard": True}), tmp_path / "missing")
    assert not (tmp_path / "missing" / "tensorboard").exists() and load_run(tmp_path / "missing").rows("epoch")


def test_protocol_mismatch_is_a_config_error(toy_store, tmp_path):
    with pytest.raises(ConfigError, match="linprobe"):
        train.finetune(toy_config(toy_store.path, "linprobe"), tmp_path / "x")


def test_batch_larger_than_the_data_is_reported(toy_store, tmp_path):
    cfg = toy_config(toy_store.path, train={"batch_size": 4096})
    with pytest.raises(HacmError, match="exceeds the 48 training clips"):
        train.pretrain(cfg, tmp_path / "big")
