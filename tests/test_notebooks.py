"""Every notebook in notebooks/ executes under papermill with tiny parameters.

One tiny synthetic store (from the data_overview notebook) and one tiny pre-training run (from the
pretrain notebook) are shared by the whole session; the model is shrunk through config overrides.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from papermill.translators import PythonTranslator
from test_evaluate import brute_force_knn

from hacm import evaluate as ev
from hacm import features, notebook, rundir
from hacm.data.store import Store
from hacm.datasets import make_dataset
from hacm.report import notebook_parameters

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CLASSES = ["wave right hand", "clap", "kick", "sit down"]
# three performers: 1 and 2 train, 3 test (NTU-60 cross-subject rule); one replication, 3 cameras
CLIPS = 3 * 1 * 3 * len(CLASSES)
TINY_MODEL = {"model.dim": 32, "model.depth": 1, "model.heads": 2, "model.decoder_dim": 32,
              "model.decoder_depth": 1, "model.num_frames": 12, "data.window_size": 12}
TINY_TRAIN = {"train.epochs": 1, "train.warmup_epochs": 0, "train.batch_size": 8}

pytestmark = pytest.mark.notebook


def execute(name: str, out: Path, **parameters) -> dict | None:
    """Run notebooks/<name>.ipynb into out/ (kernel 'hacm'); return the summary.json it wrote, if any."""
    import papermill as pm

    out.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(str(NOTEBOOKS / f"{name}.ipynb"), str(out / f"{name}.ipynb"),
                        parameters={**parameters, "report_dir": str(out)}, kernel_name="hacm",
                        progress_bar=False, cwd=str(out))
    summary = out / "summary.json"
    return json.loads(summary.read_text()) if summary.is_file() else None


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """HACM_DATA for the session's kernels: data_overview and pretrain meet at its default store."""
    root = tmp_path_factory.mktemp("data_root")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(notebook.DATA_ENV, str(root))
        yield root


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory, data_root):
    out = tmp_path_factory.mktemp("data")
    summary = execute("data_overview", out, synth_performers=3, synth_replications=1, synth_classes=CLASSES,
                      animate=[0])   # `store` left empty: the default store is generated
    return out, summary


@pytest.fixture(scope="session")
def store(data_dir, data_root):
    return str(data_root / "synth" / "store")


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory, store):
    out = tmp_path_factory.mktemp("pretrain")
    # no store given: synth_pretrain's data/synth/store is read from the data root, where data_overview wrote
    summary = execute("pretrain", out, overrides={**TINY_MODEL, **TINY_TRAIN})
    return out, summary


def figure_outputs(executed: Path) -> list[dict]:
    """The outputs of every cell that saves a figure, checked to show as images: each such cell has
    an image/png output, and no output anywhere is matplotlib's text stand-in `<Figure size ...>`."""
    nb = nbformat.read(executed, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    texts = [o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs]
    assert not [t for t in texts if "<Figure size" in t], f"{executed.name}: a figure shown as text"
    figure_cells = [c for c in nb.cells if c.cell_type == "code" and "save_figure(" in c.source]
    assert figure_cells
    for cell in figure_cells:
        assert any("image/png" in o.get("data", {}) for o in cell.outputs), f"{executed.name}: {cell.source[:80]}"
    return [o for c in figure_cells for o in c.outputs if "image/png" in o.get("data", {})]


def test_figures_display_as_images_in_the_notebook_and_its_page(pretrained, evaluated):
    """A kernel without the inline backend still shows hacm's figures as PNG with their captions,
    and the report page exported from the executed notebook embeds them."""
    from hacm.report.html import export_html

    images = figure_outputs(pretrained[0] / "pretrain.ipynb")
    assert len(images) == 2                                   # loss curves, reconstruction
    assert all("<figcaption>" in o["data"]["text/html"] for o in images)
    assert len(figure_outputs(evaluated[0] / "evaluate.ipynb")) == 4   # linprobe and semi: curves, per class
    export_html(pretrained[0] / "pretrain.ipynb")
    page = (pretrained[0] / "pretrain.notebook.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2 and "Figure size" not in page
    assert "Hatched: kept (visible) tokens" in page             # the reconstruction's caption
    assert (pretrained[0] / "reconstruction.caption.txt").read_text().startswith("Test clip 0 (")


def test_notebooks_are_committed_clean():
    """One `parameters` cell each, report_dir among its parameters, no outputs, the hacm kernel."""
    names = sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["ablations", "compare", "confusion", "data_overview", "evaluate", "explorer", "features",
                     "methods", "pretrain"]
    for name in names:
        nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        nbformat.validate(nb)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        # papermill reads every assignment (its parser stumbles on e.g. '=' inside comments)
        names = [p.name for p in PythonTranslator.inspect(tagged[0])]
        assert names == notebook_parameters(NOTEBOOKS / f"{name}.ipynb") and names[-1] == "report_dir", name
        assert nb.metadata.kernelspec.name == "hacm", name
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


def test_data_overview(data_dir, store):
    out, summary = data_dir
    assert (out / summary["store"]).resolve() == Path(store).resolve()   # written relative to the job
    assert summary["clips"] == CLIPS and summary["classes"] == len(CLASSES)
    assert summary["train"] + summary["test"] == CLIPS and summary["test"] == CLIPS // 3
    for fig in ("classes", "skeleton_0"):
        assert (out / f"{fig}.html").is_file()


def test_pretrain(pretrained, store):
    out, summary = pretrained
    run = rundir.load_run(out / "run")
    assert run.config.data.store == store                  # the store data_overview wrote
    assert summary["epochs"] == 1 and math.isfinite(summary["final_loss"])
    assert summary["final_loss"] == run.summary["loss"] == run.rows("epoch")[-1]["loss"]
    # masked_mse is the reconstruction loss of test clip 0 (the notebook's `sample`) under the run's
    # seed, recomputed here by the model's own loss; rel 1e-5: the two sum the same float32 squares
    # in another order (and perhaps under another thread count).
    test = make_dataset(run.config, Store.open(run.config.data.store), "test", augment=False)
    with torch.no_grad():
        rec = run.load_model()(test[0][0][None], generator=torch.Generator().manual_seed(run.config.train.seed))
    assert summary["masked_mse"] == pytest.approx(rec.loss_rec.item(), rel=1e-5)
    assert (out / "run" / "checkpoints" / "last.pt").is_file()
    assert (out / "loss_lr.png").is_file() and (out / "reconstruction.png").is_file()


def test_a_missing_store_fails_in_one_line_naming_the_parameter(tmp_path):
    from papermill.exceptions import PapermillExecutionError

    with pytest.raises(PapermillExecutionError) as err:
        execute("pretrain", tmp_path, store=str(tmp_path / "nowhere"))
    assert err.value.ename == "HacmError"
    assert err.value.evalue.startswith(f"store: {tmp_path / 'nowhere'} does not exist; set `store` to a store "
                                       "directory, e.g. reports/demo/data/store")
    assert err.value.traceback == [f"HacmError: {err.value.evalue}"]    # no hacm internals shown


@pytest.fixture(scope="session")
def evaluated(tmp_path_factory, store, pretrained):
    out = tmp_path_factory.mktemp("evaluate")
    summary = execute("evaluate", out, pretrained=str(pretrained[0] / "run"), protocols=["linprobe", "semi", "knn"],
                      overrides={"data.store": store, **TINY_MODEL, **TINY_TRAIN}, semi_fraction=0.5,
                      protocol_overrides={"knn": {"knn.k": [3, 1]}})
    return out, summary


def test_evaluate(evaluated):
    out, summary = evaluated
    assert set(summary) == {"linprobe_test_acc", "linprobe_best_test_acc", "semi_test_acc", "semi_best_test_acc",
                            "knn_knn3_acc", "knn_knn1_acc"}
    # Each accuracy is recomputed from what its run saved: the classifiers' from their last
    # checkpoint's predictions (the loop's batches; ties broken as the loop does, first of top-k),
    # kNN's from the pre-trained encoder's features under a brute-force kNN.
    for p in ("linprobe", "semi"):
        run = rundir.load_run(out / p)
        test = make_dataset(run.config, Store.open(run.config.data.store), "test", augment=False)
        logits, labels = ev.predict(out / p, test, batch_size=run.config.train.batch_size)
        first = torch.from_numpy(logits).topk(min(5, logits.shape[1]), dim=1).indices[:, 0].numpy()
        assert len(labels) == CLIPS // 3 and summary[f"{p}_test_acc"] == np.mean(first == labels), p
        # and they are the run's own per-clip predictions
        np.testing.assert_array_equal(rundir.read_predictions(out / p)["pred"], first)
    cfg = rundir.load_run(out / "knn").config
    store = Store.open(cfg.data.store)
    feats = {part: ev.extract_features(cfg.train.pretrained, make_dataset(cfg, store, part, augment=False),
                                       batch_size=cfg.train.batch_size) for part in ("train", "test")}
    for k in (3, 1):
        pred = brute_force_knn(*feats["train"], feats["test"][0], k, cfg.knn.temperature, store.num_classes)
        assert summary[f"knn_knn{k}_acc"] == ev.accuracy(pred, feats["test"][1]), k
    for fig in ("accuracy_linprobe", "per_class_linprobe", "accuracy_semi", "per_class_semi"):
        assert (out / f"{fig}.png").is_file()


def test_confusion(tmp_path, evaluated):
    run = str(evaluated[0] / "linprobe")
    summary = execute("confusion", tmp_path, run=run, baseline_run=run, labels=["a", "b"], top_pairs=3)
    assert len(figure_outputs(tmp_path / "confusion.ipynb")) == 3
    # the same run on both sides: same accuracy, and it is the probe's final test accuracy
    assert summary["accuracy"] == summary["baseline_accuracy"]
    assert summary["accuracy"] == pytest.approx(evaluated[1]["linprobe_test_acc"])
    for fig in ("confusion", "confusion_difference", "per_class_comparison"):
        assert (tmp_path / f"{fig}.png").is_file()


def test_compare(tmp_path, pretrained, evaluated):
    runs = [str(pretrained[0] / "run"), str(evaluated[0] / "*")]     # a path and a glob
    summary = execute("compare", tmp_path, runs=runs, table_metrics=["loss", "test_acc"])
    found = [pretrained[0] / "run"] + sorted(p for p in evaluated[0].iterdir() if (p / "config.yaml").is_file())
    assert summary["runs"] == len(found) == 4                          # pretrain, linprobe, semi, knn
    assert {"protocol", "train.pretrained", "data.subset_fraction"} <= set(summary["differing keys"])
    table = (tmp_path / "compare.md").read_text().splitlines()
    assert len(table) == 2 + 4 and table[0].startswith("| run | finished |") and "test_acc (%)" in table[0]
    # pre-training, linear probe and semi-supervised fine-tuning curves; kNN has no epochs
    for protocol in ("pretrain", "linprobe", "finetune"):
        assert (tmp_path / f"curves_{protocol}.png").is_file(), protocol
    assert not (tmp_path / "curves_knn.png").exists()
    nb = nbformat.read(tmp_path / "compare.ipynb", as_version=4)
    html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
            if "text/html" in o.get("data", {})]
    assert sum("hacm-sortable" in h for h in html) == 2                 # the run table and the config diff


def test_features(tmp_path, pretrained):
    run = pretrained[0] / "run"
    summary = execute("features", tmp_path, checkpoints={"tiny": str(run), "untrained": None}, test_clips=8, k=3,
                      seed=1)
    spaces = features.feature_spaces({"tiny": run, "untrained": None}, test_clips=8, k=3, seed=1)
    assert summary == {"tiny: kNN-3 (%)": round(100 * spaces[0].knn_accuracy, 1),
                       "untrained: kNN-3 (%)": round(100 * spaces[1].knn_accuracy, 1), "test clips": 8,
                       "train clips": CLIPS * 2 // 3}
    assert (tmp_path / "features_tsne.png").is_file()


def test_ablations_share_identical_runs(tmp_path, store):
    variants = {"base": {}, "no contrast": {"model.cc_weight": 0.0}}
    summary = execute("ablations", tmp_path, overrides={"data.store": store, **TINY_MODEL, **TINY_TRAIN},
                      eval_overrides={"data.store": store, **TINY_MODEL, "knn.k": [3, 1]},
                      variants=variants, reference="base", taus=[0.9], normalisations=["standard"],
                      seeds=[0, 1], metric="knn1")
    assert set(summary) == {"base: kNN-1 (%)", "no contrast: kNN-1 (%)", "no contrast vs base",
                            "tau 0.9, standard normalisation: kNN-1 (%)", "seeds", "test clips", "best tau"}
    assert summary["best tau"] == "Only one tau setting: nothing to compare."
    assert "significant" in summary["no contrast vs base"] and summary["test clips"] == CLIPS // 3
    # the tau-0.9 standard point of the curve is the base variant's run (the synth config's tau)
    assert summary["tau 0.9, standard normalisation: kNN-1 (%)"] == summary["base: kNN-1 (%)"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["base", "no-contrast"]
    assert (tmp_path / "tau_curve.png").is_file() and "| base |" in (tmp_path / "ablations.md").read_text()


def test_methods_compare_with_seeds_and_statistics(tmp_path, store):
    methods = {"HA-CM": {}, "random encoder": None}
    summary = execute("methods", tmp_path, overrides={"data.store": store, **TINY_MODEL, **TINY_TRAIN},
                      eval_overrides={"data.store": store, **TINY_MODEL, **TINY_TRAIN, "knn.k": [3, 1]},
                      methods=methods, seeds=[0, 1], protocols=["linprobe", "knn"])
    result = json.loads((tmp_path / "summary.json").read_text())
    assert result["seeds"] == 2 and result["test clips"] == CLIPS // 3
    for metric in ("linear probe, last epoch", "kNN-3", "kNN-1"):
        assert f"HA-CM: {metric} (%)" in summary and "significant" in summary[f"random encoder vs HA-CM: {metric}"]
    # each percentage is the mean over the seeds of the runs' saved per-clip predictions
    key = {"linear probe, last epoch": ("linprobe", "pred"), "kNN-1": ("knn", "knn1")}
    for metric, (protocol, name) in key.items():
        accs = []
        for seed in (0, 1):
            pred = rundir.read_predictions(tmp_path / "runs" / "ha-cm" / f"seed{seed}" / protocol)
            accs.append(np.mean(pred[name] == pred["labels"]))
        assert summary[f"HA-CM: {metric} (%)"] == round(100 * np.mean(accs), 1)
    for fig in ("methods_linprobe", "methods_knn3", "methods_knn1"):
        assert (tmp_path / f"{fig}.png").is_file()
    assert "| HA-CM |" in (tmp_path / "methods.md").read_text()
    # the headline for the report's index: the same numbers, per method, in percent
    head = summary["headline"]
    rows = {r["method"]: r for r in head["rows"]}
    assert list(rows) == list(methods) and head["reference"] == "HA-CM"
    assert rows["HA-CM"]["metrics"]["kNN-1"]["mean"] == pytest.approx(summary["HA-CM: kNN-1 (%)"], abs=0.05)
    assert rows["random encoder"]["metrics"]["kNN-1"]["verdict"] == summary["random encoder vs HA-CM: kNN-1"]
    assert head["config differences"]["random encoder"] == {"pre-training": "none (random weights)"}


@pytest.mark.parametrize("interactive", [False, True])
def test_explorer(tmp_path, store, pretrained, interactive):
    checkpoints = {"tiny": str(pretrained[0] / "run" / "checkpoints" / "last.pt")}
    views = [{"sample": 1, "mask_ratio": 0.8, "tau": 0.9}]
    execute_kwargs = dict(store=store, checkpoints=checkpoints, interactive=interactive, views=views)
    summary = execute("explorer", tmp_path, **execute_kwargs)
    if interactive:
        # the widget is built and displayed; static views and the summary are batch mode's
        assert summary is None
        nb = nbformat.read(tmp_path / "explorer.ipynb", as_version=4)
        shown = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
                 if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
        assert shown, "the explorer widget was not displayed"
        return
    depth = summary.pop("depth vs skeleton tree, tiny")         # the many-clip depth view's numbers
    assert "Spearman rho" in depth and "from the parent point" in depth
    assert summary == {"views": 1, "checkpoints": ["tiny"], "clips": CLIPS // 3}
    for key in ("disk", "skeleton", "tokens", "radii", "spread"):
        assert (tmp_path / f"view0_tiny_{key}.html").is_file()
