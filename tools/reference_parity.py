"""Regenerate the reference-parity fixtures (tests/data/parity/) by running MAMP's own code.

    python tools/reference_parity.py --mamp path/to/MAMP [--release path/to/HA-CM-main] [--out tests/data/parity]

Not run by the test suite: the tests read the fixtures this writes, so they pass from a fresh clone
without MAMP's code or the network. Run it with a Python that has torch and timm 0.4.12 (MAMP's
`main_*.py` use timm's `add_weight_decay` and `LabelSmoothingCrossEntropy`); a separate virtual
environment is best, e.g. `python -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install --no-deps
timm==0.4.12` with torch visible to it. timm's package imports torchvision, which none of the
functions used here needs: where torchvision cannot be imported, a stand-in module is installed.

Only numbers are written (tensors and floats in `torch.save` files that load with
weights_only=True), at a reduced width (dim 16, 2 blocks, 12 frames) so the files stay small:

- release_eval.pt (with --release): the same for the HA-CM release's downstream model (18 token
  joints, its Poincare-ball map with its 1 - 1e-5 projection).
- mamp_eval.pt: MAMP's downstream `model.transformer.Transformer` with random weights and random
  BatchNorm statistics; for the linear probe (its head wrapped in BatchNorm1d(affine=False) as
  main_linprobe.py does) and the fine-tune head (hidden width 16 instead of 2048): pooled
  features and logits in eval mode of single- and two-actor clips, then one training step each
  (linear probe: SGD momentum 0.9 on the head, cross-entropy; fine-tune: AdamW over
  util/lr_decay.param_groups_lrd with layer decay 0.8 and weight decay 0.05, timm's label
  smoothing 0.1, head dropout 0.3 drawn after torch.manual_seed, lr from util/lr_sched at a
  fractional epoch): the loss, every gradient and every updated tensor.
- mamp_feeder.pt: MAMP's feeder on clips of 40-130 frames (one and two actors): training crops with
  rotation for the joint, bone and motion streams, with its random draws (crop ratio, offset,
  angles), and the test feeder's centred crop.
- mamp_pretrain.pt: MAMP's `model_mamp.transformer.Transformer`, one pre-training step on
  two-actor clips: the uniform noise of its Gumbel draw, the mask, the prediction, the loss, every
  gradient, and the weights after AdamW (timm add_weight_decay, betas 0.9/0.95) at the lr of
  util/lr_sched; the lr of every step of a short run; each parameter's weight decay.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import types
from pathlib import Path

import torch

DIM, DEPTH, HEADS, FRAMES, T_PATCH, CLASSES, HIDDEN = 16, 2, 2, 12, 3, 5, 16
DECODER_DIM, DECODER_DEPTH, MASK_RATIO, TAU = 16, 1, 0.9, 0.8
FINETUNE = dict(lr=3e-4, min_lr=1e-5, warmup_epochs=5, epochs=100, weight_decay=0.05, layer_decay=0.8,
                smoothing=0.1, steps_per_epoch=4, step=6)     # step 6 of 4 per epoch: epoch 1.5, in warmup
LINPROBE = dict(lr=0.1, min_lr=0.0, warmup_epochs=0, epochs=100, steps_per_epoch=4, step=9)
PRETRAIN = dict(lr=1e-3, min_lr=5e-4, warmup_epochs=2, epochs=6, weight_decay=0.05, steps_per_epoch=3, step=8)


class _Stub(types.ModuleType):
    """Any attribute is another stub: enough for timm's package-level `import torchvision...`."""

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        sub = _Stub(f"{self.__name__}.{name}")
        sys.modules[sub.__name__] = sub
        return sub

    def __call__(self, *args, **kwargs):
        return self

    def __mro_entries__(self, bases):
        return (object,)


def import_timm():
    try:
        import torchvision  # noqa: F401
    except Exception:
        for name in ("torchvision", "torchvision.transforms", "torchvision.transforms.functional",
                     "torchvision.datasets", "torchvision.ops", "torchvision.models"):
            sys.modules[name] = _Stub(name)
    import timm.loss
    import timm.optim.optim_factory
    return timm


def clips(n: int, seed: int, single: tuple[int, ...]) -> torch.Tensor:
    """[n, 3, FRAMES, 25, 2] smooth random skeleton motion; clips in `single` have an all-zero actor 2."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 3, 1, 25, 2, generator=g)
    drift = torch.randn(n, 3, FRAMES, 25, 2, generator=g).cumsum(2) * 0.05
    x = base + drift
    for i in single:
        x[i, ..., 1] = 0
    return x


def lr_of(sched, cfg: dict, step: int) -> float:
    """MAMP's lr (util/lr_sched.adjust_learning_rate) at iteration `step`, as its engines call it."""
    args = argparse.Namespace(**cfg)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)
    return sched.adjust_learning_rate(opt, step / cfg["steps_per_epoch"], args)


def randomise_bn(bn: torch.nn.BatchNorm1d, g: torch.Generator) -> None:
    bn.running_mean.copy_(torch.randn(bn.num_features, generator=g) * 0.3)
    bn.running_var.copy_(torch.rand(bn.num_features, generator=g) + 0.5)
    if bn.affine:
        bn.weight.data.copy_(1 + 0.1 * torch.randn(bn.num_features, generator=g))
        bn.bias.data.copy_(0.1 * torch.randn(bn.num_features, generator=g))


def grads_and_update(model, optimizer, loss, before: dict) -> dict:
    """The loss, every gradient and every tensor the step changed (parameters, BatchNorm statistics)."""
    optimizer.zero_grad()
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    optimizer.step()
    after = {k: v.detach().clone() for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    return {"loss": loss.detach(), "grads": grads, "after": after}


def eval_fixture(timm, joints: int = 25) -> dict:
    """The downstream model on sys.path (MAMP's, or the release's with `joints` 18 and its ball map)."""
    from model.transformer import ActionHeadFinetune, Transformer
    from util import lr_decay, lr_sched

    x = clips(4, seed=1, single=(0, 2))            # clips 0 and 2 single-actor, 1 and 3 two-actor
    y = torch.tensor([0, 3, 1, 4])
    out: dict = {"x": x, "y": y}
    for protocol in ("linprobe", "finetune"):
        torch.manual_seed(0)
        model = Transformer(dim_in=3, num_classes=CLASSES, dim_feat=DIM, depth=DEPTH, num_heads=HEADS,
                            num_frames=FRAMES, num_joints=joints, t_patch_size=T_PATCH, protocol=protocol)
        g = torch.Generator().manual_seed(2)
        if protocol == "linprobe":
            # main_linprobe.py: trunc-normal head, then BatchNorm1d(affine=False, eps=1e-6) before it
            timm.models.layers.trunc_normal_(model.head.fc.weight, std=0.01)
            model.head.fc = torch.nn.Sequential(torch.nn.BatchNorm1d(DIM, affine=False, eps=1e-6), model.head.fc)
            randomise_bn(model.head.fc[0], g)
        else:
            model.head = ActionHeadFinetune(dropout_ratio=0.3, dim_feat=DIM, num_classes=CLASSES,
                                            num_joints=joints, hidden_dim=HIDDEN)
            model.head.apply(model._init_weights)
            randomise_bn(model.head.bn, g)
        pooled = {}
        model.head.register_forward_hook(lambda m, inp, o: pooled.__setitem__("f", inp[0].detach().clone()))
        model.eval()
        with torch.no_grad():
            logits = model(x)
        rec = {"state_dict": {k: v.clone() for k, v in model.state_dict().items()}, "logits": logits}
        if protocol == "linprobe":
            rec["features"] = pooled["f"].mean(dim=[1, 2, 3])
            for p in model.parameters():
                p.requires_grad = False
            for p in model.head.parameters():
                p.requires_grad = True
            model.eval()
            model.head.train(True)                            # engine_linprobe: only the head trains
            opt = torch.optim.SGD(model.head.parameters(), lr=LINPROBE["lr"], momentum=0.9, weight_decay=0)
            lr = lr_sched.adjust_learning_rate(opt, LINPROBE["step"] / LINPROBE["steps_per_epoch"],
                                               argparse.Namespace(**LINPROBE))
            step = grads_and_update(model, opt, torch.nn.CrossEntropyLoss()(model(x), y), rec["state_dict"])
            rec.update(step, lr=lr, schedule=LINPROBE)
        else:
            groups = lr_decay.param_groups_lrd(model, FINETUNE["weight_decay"], layer_decay=FINETUNE["layer_decay"])
            opt = torch.optim.AdamW(groups, lr=FINETUNE["lr"])
            name_of = {id(p): n for n, p in model.named_parameters()}
            rec["groups"] = {name_of[id(p)]: (float(gr["lr_scale"]), float(gr["weight_decay"]))
                             for gr in groups for p in gr["params"]}
            lr = lr_sched.adjust_learning_rate(opt, FINETUNE["step"] / FINETUNE["steps_per_epoch"],
                                               argparse.Namespace(**FINETUNE))
            model.train()
            torch.manual_seed(7)                                  # the head's dropout draw
            criterion = timm.loss.LabelSmoothingCrossEntropy(smoothing=FINETUNE["smoothing"])
            step = grads_and_update(model, opt, criterion(model(x), y), rec["state_dict"])
            rec.update(step, lr=lr, schedule=FINETUNE, dropout_seed=7)
        out[protocol] = rec
    return out


def pretrain_fixture(timm) -> dict:
    from model_mamp.transformer import Transformer             # MAMP's pre-training model
    from util import lr_sched

    torch.manual_seed(0)
    model = Transformer(dim_in=3, dim_feat=DIM, decoder_dim_feat=DECODER_DIM, depth=DEPTH,
                        decoder_depth=DECODER_DEPTH, num_heads=HEADS, num_frames=FRAMES, num_joints=25,
                        t_patch_size=T_PATCH, norm_skes_loss=True)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = clips(3, seed=3, single=())
    drawn = []
    rand = torch.rand

    def recording_rand(*args, **kwargs):                        # the Gumbel draw's uniform noise
        u = rand(*args, **kwargs)
        drawn.append(u.clone())
        return u

    groups = timm.optim.optim_factory.add_weight_decay(model, PRETRAIN["weight_decay"])
    opt = torch.optim.AdamW(groups, lr=PRETRAIN["lr"], betas=(0.9, 0.95))
    name_of = {id(p): n for n, p in model.named_parameters()}
    decay = {name_of[id(p)]: float(gr["weight_decay"]) for gr in groups for p in gr["params"]}
    lr = lr_sched.adjust_learning_rate(opt, PRETRAIN["step"] / PRETRAIN["steps_per_epoch"],
                                       argparse.Namespace(**PRETRAIN))
    model.train()
    torch.manual_seed(5)
    torch.rand = recording_rand
    try:
        loss, pred, mask = model(x, mask_ratio=MASK_RATIO, motion_stride=1, motion_aware_tau=TAU)
    finally:
        torch.rand = rand
    assert len(drawn) == 1, "MAMP drew its masking noise more than once"
    step = grads_and_update(model, opt, loss, before)
    steps = PRETRAIN["epochs"] * PRETRAIN["steps_per_epoch"]
    schedule = [lr_of(lr_sched, PRETRAIN, i) for i in range(steps)]
    return {"x": x, "state_dict": before, "noise": drawn[0], "mask": mask.detach(), "pred": pred.detach(),
            **step, "lr": lr, "lr_schedule": schedule, "decay": decay, "schedule": PRETRAIN,
            "masking": dict(mask_ratio=MASK_RATIO, tau=TAU)}


FEEDER_WINDOW = 20
# (recorded frames, actors) of the feeder's clips: below and above MAMP's 64-frame crop floor
FEEDER_CLIPS = ((40, 1), (70, 2), (100, 1), (130, 2))


def feeder_fixture(timm) -> dict:
    """MAMP's feeder (feeder/feeder_ntu.py, feeder/tools.py) on clips stored as its 300-frame .npz
    rows, with every random draw recorded: the crop ratio and offset (numpy) and the rotation angles
    (torch), for the training (p_interval 0.5-1, random_rot) and test (p_interval 0.95) feeders and
    the joint, bone and motion streams."""
    import numpy as np
    from feeder import feeder_ntu, tools

    g = np.random.default_rng(4)
    clips = []
    for frames, actors in FEEDER_CLIPS:
        x = np.zeros((300, 2 * 25 * 3), np.float32)                     # MAMP's npz row layout: T x (M V C)
        x[:frames, :actors * 75] = g.normal(size=(frames, actors * 75)).cumsum(0) * 0.05 + g.normal(size=actors * 75)
        clips.append(x)
    data = np.stack(clips)
    labels = np.arange(len(clips))
    out = {"clips": [torch.from_numpy(c[:f]) for c, (f, _) in zip(clips, FEEDER_CLIPS)],   # recorded frames only
           "window": FEEDER_WINDOW, "runs": []}
    rand, randint, rot_of = np.random.rand, np.random.randint, tools._rot
    streams = ((False, False), (True, False), (False, True))
    for split, p_interval, rotate, kinds in (("train", [0.5, 1.0], True, streams), ("test", [0.95], False, streams[:1])):
        for bone, vel in kinds:
            feeder = feeder_ntu.Feeder.__new__(feeder_ntu.Feeder)       # its __getitem__ on our rows
            feeder.data, feeder.label, feeder.p_interval = data.reshape(len(data), 300, 2, 25, 3).transpose(0, 4, 1, 3, 2), labels, p_interval
            feeder.window_size, feeder.random_rot, feeder.bone, feeder.vel = FEEDER_WINDOW, rotate, bone, vel
            for i in range(len(data)):
                draws = {}
                # rand(1)[0]: the same draw as a scalar; MAMP's int(np.floor(array of one)) needs numpy < 2
                np.random.rand = lambda *a: draws.setdefault("p", rand(*a)[0])
                np.random.randint = lambda *a: draws.setdefault("bias", randint(*a))
                tools._rot = lambda r: (draws.setdefault("angles", r[0].clone()), rot_of(r))[1]
                try:
                    np.random.seed(100 + i)
                    torch.manual_seed(100 + i)
                    x, _, _ = feeder[i]
                finally:
                    np.random.rand, np.random.randint, tools._rot = rand, randint, rot_of
                out["runs"].append({"split": split, "p_interval": p_interval, "random_rot": rotate, "bone": bone,
                                    "vel": vel, "index": i, "x": torch.as_tensor(np.asarray(x)),
                                    "p": float(draws["p"]) if "p" in draws else None,
                                    "bias": int(draws["bias"]) if "bias" in draws else None,
                                    "angles": draws.get("angles")})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mamp", type=Path, required=True, help="a checkout of github.com/maoyunyao/MAMP")
    ap.add_argument("--release", type=Path, default=None,
                    help="a checkout of github.com/YinxPeng/HA-CM-main (its downstream model: release_eval.pt)")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "tests" / "data" / "parity")
    args = ap.parse_args(argv)
    mamp = args.mamp.resolve()
    if not (mamp / "model_mamp" / "transformer.py").is_file():
        ap.error(f"--mamp {mamp}: expected MAMP's checkout (model_mamp/transformer.py is not there)")
    timm = import_timm()
    torch.set_num_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    width = dict(dim=DIM, depth=DEPTH, heads=HEADS, frames=FRAMES, t_patch=T_PATCH, classes=CLASSES,
                 hidden=HIDDEN, decoder_dim=DECODER_DIM, decoder_depth=DECODER_DEPTH)
    jobs = [(mamp, "mamp", "mamp_eval.pt", eval_fixture), (mamp, "mamp", "mamp_pretrain.pt", pretrain_fixture),
            (mamp, "mamp", "mamp_feeder.pt", feeder_fixture)]
    if args.release is not None:
        jobs.append((args.release.resolve(), "release", "release_eval.pt", lambda t: eval_fixture(t, joints=18)))
    for root, who, name, make in jobs:
        _use_checkout(root)
        meta = {f"{who}_commit": _commit(root), "torch": str(torch.__version__), "timm": str(timm.__version__),
                "width": width}
        data = {"meta": meta, **make(timm)}
        tmp = args.out / f".{name}.tmp"
        torch.save(data, tmp)
        tmp.replace(args.out / name)
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size / 1024:.0f} KiB)")


def _use_checkout(root: Path) -> None:
    """Put one reference checkout first on sys.path; both have top-level `model`, `util`, `feeder`."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("model", "model_mamp", "util", "feeder")]:
        del sys.modules[name]
    sys.path[:] = [str(root)] + [p for p in sys.path if p not in _CHECKOUTS]
    _CHECKOUTS.add(str(root))


_CHECKOUTS: set[str] = set()


def _commit(root: Path) -> str:
    try:
        return subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"


if __name__ == "__main__":
    main()
