"""hacm against MAMP's and the HA-CM release's own code, step by step, at a reduced width.

The fixtures in tests/data/parity/ hold only numbers that MAMP's code computed (its models, its
main_*.py optimiser set-ups, its lr schedule, timm's helpers it calls); tools/reference_parity.py
regenerates them from a MAMP checkout. hacm runs here under the shipped `mamp_*` configs, with
only the width reduced, from the same weights, batch and masking noise.
"""
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hacm import config
from hacm.checkpoint import load_mamp_classifier
from hacm.data.dataset import SkeletonDataset
from hacm.data.store import SampleRecord, StoreWriter
from hacm.errors import HacmError
from hacm.geometry import RELEASE_BALL_EPS
from hacm.model import HACM, ActionClassifier, FinetuneHead
from hacm.optim import lr_at, make_optimizer, param_groups, set_lr

PARITY = Path(__file__).parent / "data" / "parity"
UPSTREAM = Path(__file__).parent / "data" / "upstream"
ATOL = 1e-5


def assert_same_update(ours: dict, theirs: dict, grads: dict, lr: float) -> None:
    """The tensors after one AdamW step agree, except where the gradient is 0 in exact arithmetic
    (an attention's key bias: softmax ignores a constant per query; the bias of a layer followed by
    a training-mode BatchNorm): both codes see rounding noise of up to ~3e-8 there, which Adam's first
    step turns into +-lr of random sign, so there both moved by at most lr."""
    for name, value in theirs.items():
        mine = ours[name].detach()
        noise = grads[name].abs() < 1e-7 if name in grads else torch.zeros_like(value, dtype=torch.bool)
        torch.testing.assert_close(mine[~noise], value[~noise], rtol=0, atol=ATOL, msg=name)
        assert ((mine - value)[noise].abs() <= 2 * lr * (1 + 1e-6)).all(), name


@pytest.fixture(scope="module")
def eval_ref():
    return torch.load(PARITY / "mamp_eval.pt", weights_only=True)


@pytest.fixture(scope="module")
def pretrain_ref():
    return torch.load(PARITY / "mamp_pretrain.pt", weights_only=True)


def mamp_config(name, ref: dict, model: dict | None = None, **sections) -> config.RunConfig:
    """A shipped mamp_* config (or an authors' YAML) at the fixture's reduced width (every other value as given)."""
    w = ref["meta"]["width"]
    cfg = config.load_config(name)
    model = dict(dim=w["dim"], depth=w["depth"], heads=w["heads"], num_frames=w["frames"], t_patch=w["t_patch"],
                 decoder_dim=w["decoder_dim"], decoder_depth=w["decoder_depth"], drop_path=0.0, **(model or {}))
    return config.replace(cfg, model=model, data=dict(window_size=w["frames"]), **sections)


def classifier(cfg: config.RunConfig, ref: dict, protocol: str, pool: bool | None = None) -> ActionClassifier:
    model_cfg = cfg.model if pool is None else config.dataclasses.replace(cfg.model, pool_absent_actors=pool)
    w = ref["meta"]["width"]
    clf = ActionClassifier(model_cfg, w["classes"], protocol, head_dropout=cfg.train.head_dropout)
    if protocol == "finetune":      # the fixture's head is 16 wide instead of MAMP's 2048
        clf.head = FinetuneHead(model_cfg.num_tokens_joints, model_cfg.dim, w["classes"], cfg.train.head_dropout,
                                hidden=w["hidden"])
    load_mamp_classifier(clf, ref[protocol]["state_dict"])
    return clf


@pytest.mark.parametrize("protocol", ["linprobe", "finetune"])
def test_mamp_checkpoint_and_head_give_mamps_logits(eval_ref, protocol):
    cfg = mamp_config(f"mamp_ntu60_xsub_{protocol}", eval_ref)
    assert cfg.model.pool_absent_actors                     # the shipped config pools as MAMP
    clf = classifier(cfg, eval_ref, protocol).eval()
    x, ref = eval_ref["x"], eval_ref[protocol]
    with torch.no_grad():
        torch.testing.assert_close(clf(x), ref["logits"], rtol=0, atol=ATOL)
        if protocol == "linprobe":
            torch.testing.assert_close(clf.features(x), ref["features"], rtol=0, atol=ATOL)
        # without the switch (hacm's default) the single-actor clips 0 and 2 differ, the two-actor agree
        skipped = classifier(cfg, eval_ref, protocol, pool=False).eval()(x)
    gap = (skipped - ref["logits"]).abs().amax(1)
    assert gap[[1, 3]].max() < ATOL and gap[[0, 2]].min() > 1e-2, gap


@pytest.mark.parametrize("protocol", ["linprobe", "finetune"])
def test_release_checkpoint_and_head_give_the_releases_logits(protocol):
    # the authors' own downstream YAML read by hacm (pooling switched on by the translation), with the
    # release's ball projection: its 18-joint hyperbolic encoder and heads give its logits
    ref = torch.load(PARITY / "release_eval.pt", weights_only=True)
    yaml = UPSTREAM / "hacm" / "ntu60_xsub_joint" / f"{protocol}.yaml"
    cfg = mamp_config(yaml, ref, model=dict(ball_eps=RELEASE_BALL_EPS))
    assert cfg.model.pool_absent_actors and cfg.model.geometry == "poincare" and cfg.model.prune
    clf = classifier(cfg, ref, protocol).eval()
    with torch.no_grad():
        torch.testing.assert_close(clf(ref["x"]), ref[protocol]["logits"], rtol=0, atol=ATOL)
        if protocol == "linprobe":
            torch.testing.assert_close(clf.features(ref["x"]), ref["linprobe"]["features"], rtol=0, atol=ATOL)


def test_mamp_linear_probe_step(eval_ref):
    ref = eval_ref["linprobe"]
    s = ref["schedule"]
    cfg = mamp_config("mamp_ntu60_xsub_linprobe", eval_ref)
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.warmup_epochs, cfg.train.momentum) == \
        (s["lr"], s["min_lr"], s["warmup_epochs"], 0.9) and cfg.train.epochs == s["epochs"]
    clf = classifier(cfg, eval_ref, "linprobe").train()
    opt = make_optimizer(clf, cfg)
    lr = lr_at(s["step"], s["steps_per_epoch"], cfg)
    assert lr == pytest.approx(ref["lr"], rel=1e-12)
    set_lr(opt, lr)
    loss = F.cross_entropy(clf(eval_ref["x"]), eval_ref["y"])
    opt.zero_grad()
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref["loss"], rtol=0, atol=ATOL)
    ours = {"head.fc.1.weight": "head.fc.weight", "head.fc.1.bias": "head.fc.bias"}
    assert set(ref["grads"]) == set(ours)
    params = dict(clf.named_parameters())
    for theirs, name in ours.items():
        torch.testing.assert_close(params[name].grad, ref["grads"][theirs], rtol=0, atol=ATOL)
    opt.step()
    state = clf.state_dict()
    after = {"head.fc.0.running_mean": "head.bn.running_mean", "head.fc.0.running_var": "head.bn.running_var",
             "head.fc.0.num_batches_tracked": "head.bn.num_batches_tracked", **ours}
    assert set(ref["after"]) == set(after)                  # the frozen encoder did not move, in either
    for theirs, name in after.items():
        torch.testing.assert_close(state[name], ref["after"][theirs], rtol=0, atol=ATOL)


def test_mamp_finetune_step(eval_ref):
    ref = eval_ref["finetune"]
    s = ref["schedule"]
    cfg = mamp_config("mamp_ntu60_xsub_finetune", eval_ref)
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.warmup_epochs, cfg.train.weight_decay, cfg.train.layer_decay,
            cfg.train.label_smoothing, cfg.train.head_dropout, cfg.train.betas) == \
        (s["lr"], s["min_lr"], s["warmup_epochs"], s["weight_decay"], s["layer_decay"], s["smoothing"], 0.3,
         (0.9, 0.999))
    clf = classifier(cfg, eval_ref, "finetune").train()
    opt = make_optimizer(clf, cfg)
    # layer decay and weight decay of every tensor, as MAMP's param_groups_lrd
    name_of = {id(p): n.removeprefix("encoder.") for n, p in clf.named_parameters()}
    groups = {name_of[id(p)]: (g["lr_scale"], g["weight_decay"]) for g in param_groups(clf, cfg) for p in g["params"]}
    assert groups.keys() == ref["groups"].keys()
    for name, (scale, decay) in ref["groups"].items():
        assert groups[name] == (pytest.approx(scale, rel=1e-12), decay), name
    lr = lr_at(s["step"], s["steps_per_epoch"], cfg)
    assert lr == pytest.approx(ref["lr"], rel=1e-12)
    set_lr(opt, lr)
    torch.manual_seed(ref["dropout_seed"])                  # the head's dropout draws MAMP's mask
    loss = F.cross_entropy(clf(eval_ref["x"]), eval_ref["y"], label_smoothing=cfg.train.label_smoothing)
    opt.zero_grad()
    loss.backward()
    torch.testing.assert_close(loss.detach(), ref["loss"], rtol=0, atol=ATOL)
    params = {n.removeprefix("encoder."): p for n, p in clf.named_parameters()}
    assert set(ref["grads"]) == set(params)
    for name, grad in ref["grads"].items():
        torch.testing.assert_close(params[name].grad, grad, rtol=1e-4, atol=ATOL, msg=name)
    opt.step()
    state = {k.removeprefix("encoder."): v for k, v in clf.state_dict().items()}
    assert_same_update(state, ref["after"], ref["grads"], max(g["lr"] for g in opt.param_groups))


def test_a_mamp_classifier_missing_a_head_tensor_is_refused(eval_ref):
    cfg = mamp_config("mamp_ntu60_xsub_linprobe", eval_ref)
    sd = dict(eval_ref["linprobe"]["state_dict"])
    del sd["head.fc.0.running_var"]
    with pytest.raises(HacmError, match=r"no value for head.fc.0.running_var"):
        load_mamp_classifier(ActionClassifier(cfg.model, 5, "linprobe"), sd)
    with pytest.raises(HacmError, match=r"'head.fc.1.weight': shape \[5, 16\] does not match"):
        load_mamp_classifier(ActionClassifier(cfg.model, 7, "linprobe"), eval_ref["linprobe"]["state_dict"])


def test_mamp_pretraining_step(pretrain_ref, monkeypatch):
    ref = pretrain_ref
    s, m = ref["schedule"], ref["masking"]
    cfg = mamp_config("mamp_ntu60_xsub_pretrain", ref, train=dict(epochs=s["epochs"], warmup_epochs=s["warmup_epochs"]))
    assert (cfg.masking.mask_ratio, cfg.masking.tau, cfg.masking.keep_count) == (m["mask_ratio"], m["tau"], "floor")
    assert (cfg.train.lr, cfg.train.min_lr, cfg.train.weight_decay) == (s["lr"], s["min_lr"], s["weight_decay"])
    torch.manual_seed(0)
    model = HACM(cfg.model, cfg.masking).train()
    own = model.state_dict()
    model.load_state_dict({k: ref["state_dict"][k.removeprefix("encoder.")] for k in own})
    # the lr of every step of the short run, and each tensor's weight decay (timm's add_weight_decay)
    lrs = [lr_at(i, s["steps_per_epoch"], cfg) for i in range(len(ref["lr_schedule"]))]
    assert lrs == pytest.approx(ref["lr_schedule"], rel=1e-12, abs=1e-15)
    name_of = {id(p): n.removeprefix("encoder.") for n, p in model.named_parameters()}
    decay = {name_of[id(p)]: g["weight_decay"] for g in param_groups(model, cfg) for p in g["params"]}
    assert decay == ref["decay"]
    opt = make_optimizer(model, cfg)
    set_lr(opt, lr_at(s["step"], s["steps_per_epoch"], cfg))
    assert opt.param_groups[0]["lr"] == pytest.approx(ref["lr"], rel=1e-12)
    # MAMP's uniform noise in place of hacm's draw: the Gumbel keys then decide the same tokens
    rand = torch.rand

    def mamps_noise(*args, **kwargs):
        assert tuple(args[0]) == tuple(ref["noise"].shape)
        return ref["noise"].to(kwargs.get("dtype") or torch.float32)

    monkeypatch.setattr(torch, "rand", mamps_noise)
    out = model(ref["x"], torch.Generator())
    monkeypatch.setattr(torch, "rand", rand)
    assert torch.equal(out.mask, ref["mask"].bool())          # 9 of 100 kept: int(), not round()
    torch.testing.assert_close(out.pred, ref["pred"], rtol=0, atol=ATOL)
    torch.testing.assert_close(out.loss.detach(), ref["loss"], rtol=0, atol=ATOL)
    opt.zero_grad()
    out.loss.backward()
    params = {n.removeprefix("encoder."): p for n, p in model.named_parameters()}
    assert set(ref["grads"]) == set(params)
    for name, grad in ref["grads"].items():
        torch.testing.assert_close(params[name].grad, grad, rtol=1e-4, atol=ATOL, msg=name)
    opt.step()
    assert_same_update(params, ref["after"], ref["grads"], ref["lr"])


class _Draws:
    """Stands in for the dataset's numpy Generator and hands out MAMP's recorded draws."""

    def __init__(self, run: dict):
        self.run = run

    def uniform(self, low, high, size=None):
        if size is None:                                   # the crop ratio: MAMP's rand * (p1 - p0) + p0
            return self.run["p"] * (high - low) + low
        assert size == 3 and (low, high) == (-0.3, 0.3)   # the rotation angles about x, y, z
        return self.run["angles"].double().numpy()

    def integers(self, low, high):
        assert low == 0
        return self.run["bias"]


def test_mamp_feeder_augmentations_and_streams(tmp_path, monkeypatch):
    ref = torch.load(PARITY / "mamp_feeder.pt", weights_only=True)
    with StoreWriter(tmp_path / "store", dataset="synth", class_names=["a", "b", "c", "d"]) as w:
        for i, rows in enumerate(ref["clips"]):
            frames = rows.numpy().reshape(len(rows), 2, 25, 3).transpose(1, 0, 2, 3)   # MAMP's T x (M V C)
            w.add(SampleRecord(f"c{i}", i, np.ascontiguousarray(frames[: 1 + bool(frames[1].any())])))
        n = len(ref["clips"])
        store = w.finish({"synth-xsub": {"train": np.arange(n), "test": np.arange(n)}})
    floor_vs_round = []
    for run in ref["runs"]:
        ds = SkeletonDataset(store, "synth-xsub", run["split"], window_size=ref["window"], p_interval=run["p_interval"],
                             random_rot=run["random_rot"], rot_range=0.3, bone=run["bone"], vel=run["vel"])
        monkeypatch.setattr(np.random, "default_rng", lambda seed, run=run: _Draws(run))
        x = ds.clip(run["index"])
        valid = len(ref["clips"][run["index"]])
        if run["p"] is not None:
            p = run["p"] * (run["p_interval"][1] - run["p_interval"][0]) + run["p_interval"][0]
            if max(64, int(np.floor(valid * p))) != max(64, int(round(p * valid))) and valid > 64:
                # MAMP floors the crop length, hacm rounds it (docs/differences.md): one frame more here
                floor_vs_round.append(run["index"])
                continue
        np.testing.assert_allclose(x, run["x"].numpy(), rtol=0, atol=ATOL, err_msg=str({k: run[k] for k in (
            "split", "bone", "vel", "index")}))
    monkeypatch.undo()
    assert len(floor_vs_round) < len(ref["runs"]) // 2, floor_vs_round     # most draws compared exactly
