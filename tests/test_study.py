"""Studies (hacm.study): variants x seeds in directories named by what they are, finished runs read
rather than re-run, identical settings shared, and the per-clip statistics of hacm.stats."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hacm.config import to_yaml
from hacm.errors import HacmError
from hacm.rundir import load_run, read_predictions
from hacm.study import BEST_ON_TEST, ONE_EVALUATION, StudyResult, StudyRun, run_study, slug
from test_train import make_toy_store, toy_config

VARIANTS = {"base": {}, "no contrast": {"model.cc_weight": 0.0}, "base again": {"masking.tau": 0.9},
            "random encoder": None}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    store = make_toy_store(root / "store", clips_per_class=12)
    pre, ev = root / "pre.yaml", root / "eval.yaml"
    pre.write_text(to_yaml(toy_config(store.path, train={"epochs": 1, "checkpoint_every": 0})))
    ev.write_text(to_yaml(toy_config(store.path, "linprobe", train={"epochs": 2, "warmup_epochs": 0,
                                                                    "checkpoint_every": 0, "eval_every": 2})))
    kwargs = dict(pretrain_config=pre, eval_config=ev, eval_overrides={"knn.k": [3, 1]},
                  protocols=["knn", "linprobe"], progress=False)
    result = run_study(VARIANTS, [0, 1], root / "runs", **kwargs)
    return root, result, kwargs


def test_runs_are_named_by_what_they_are_and_identical_settings_share(study):
    root, result, _ = study
    assert sorted(p.name for p in (root / "runs").iterdir()) == ["base", "no-contrast", "random-encoder"]
    assert sorted(p.name for p in (root / "runs" / "base").iterdir()) == ["seed0", "seed1"]
    # "base again" resolves to the base config (tau 0.9 is the base's): it reads the base's runs
    again = [r for r in result.runs if r.variant == "base again"]
    assert [r.dirs["pretrain"] for r in again] == [root / "runs" / "base" / f"seed{s}" / "pretrain" for s in (0, 1)]
    # a random encoder is evaluated without pre-training, with the seed's own initialisation
    rand = [r for r in result.runs if r.variant == "random encoder"]
    assert all("pretrain" not in r.dirs for r in rand)
    assert load_run(rand[0].dirs["knn"]).config.train.pretrained is None
    assert load_run(rand[1].dirs["knn"]).config.train.seed == 1


def test_accuracies_are_the_final_models_per_clip_predictions(study):
    _, result, _ = study
    for run in result.runs:
        pred = read_predictions(run.dirs["linprobe"])
        np.testing.assert_array_equal(run.correct["linprobe"], pred["pred"] == pred["labels"])
        assert run.accuracy["linprobe"] == pytest.approx(load_run(run.dirs["linprobe"]).summary["test_acc"])
        knn = load_run(run.dirs["knn"]).summary
        assert run.accuracy["knn1"] == pytest.approx(knn["knn1_acc"]) and run.accuracy["knn3"] == pytest.approx(knn["knn3_acc"])
    assert result.test_clips == 4 * 6 and set(result.metrics()) == {"linprobe", "knn3", "knn1"}


def test_table_carries_spread_intervals_and_verdicts(study):
    _, result, _ = study
    rows = {r["method"]: r for r in result.table("base")}
    assert set(rows) == set(VARIANTS)
    assert "±" in rows["base"]["linear probe, last epoch (%)"]
    verdict = rows["no contrast"]["linear probe, last epoch: vs base"]
    assert "significant" in verdict and "pts" in verdict
    # the same runs under two names: exactly no difference
    assert rows["base again"]["kNN-1: vs base"].startswith("+0.0 pts") and "not significant" in rows["base again"]["kNN-1: vs base"]


def test_headline_is_plain_percent_data_with_config_differences(study):
    _, result, _ = study
    head = result.headline("base")
    assert head["metrics"] == ["linear probe, last epoch", "kNN-3", "kNN-1"]
    rows = {r["method"]: r for r in head["rows"]}
    for name, row in rows.items():
        probe = row["metrics"]["linear probe, last epoch"]
        seeds = [100 * r.accuracy["linprobe"] for r in result.runs if r.variant == name]
        assert probe["mean"] == pytest.approx(np.mean(seeds), abs=0.005)
        assert probe["ci"][0] <= probe["mean"] <= probe["ci"][1] and row["seeds"] == 2 and row["test clips"] == 24
        # the extra selected on test is the mean of the runs' best epochs, labelled apart from the last epoch
        best = [100 * r.extras["linprobe_best_on_test"] for r in result.runs if r.variant == name]
        assert row["best on test"] == pytest.approx(np.mean(best), abs=0.005)
    assert rows["base"]["metrics"]["kNN-1"]["significant"] is None
    again = rows["base again"]["metrics"]["kNN-1"]
    assert again["difference"] == 0.0 and again["significant"] is False and again["verdict"].startswith("not significant")
    json.dumps(head)   # summary.json takes it as is
    # chance level of these test clips, the untrained floor and a flag on every method below it
    labels = load_run(result.runs[0].dirs["linprobe"]).predictions()["labels"]
    counts = np.bincount(labels)
    assert head["chance"] == {"majority": round(100 * counts.max() / len(labels), 2),
                              "uniform": round(100 / (counts > 0).sum(), 2), "classes": int((counts > 0).sum())}
    assert head["untrained"] == "random encoder" and head["benchmark"] == result.configs["base"]["data.benchmark"]
    for metric in head["metrics"]:
        floor = rows["random encoder"]["metrics"][metric]["mean"]
        for name, row in rows.items():
            below, mean = row["metrics"][metric]["below untrained"], row["metrics"][metric]["mean"]
            # means are rounded to 0.01 points in the headline: the flag compares the unrounded ones
            assert (mean <= floor if below else name == "random encoder" or mean >= floor), (name, metric)
    # only cc_weight tells the pre-trained variants apart; the random encoder is not pre-trained
    base_weight = load_run(result.runs[0].dirs["pretrain"]).config.model.cc_weight
    assert base_weight > 0
    assert head["config differences"] == {"base": {"model.cc_weight": base_weight},
                                          "no contrast": {"model.cc_weight": 0.0},
                                          "base again": {"model.cc_weight": base_weight},
                                          "random encoder": {"pre-training": "none (random weights)"}}


def test_a_finished_study_is_read_not_run_again(study):
    root, result, kwargs = study
    stamp = {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("summary.json")}
    again = run_study(VARIANTS, [0, 1], root / "runs", **kwargs)
    assert {p: p.stat().st_mtime_ns for p in (root / "runs").rglob("summary.json")} == stamp
    assert [r.accuracy for r in again.runs] == [r.accuracy for r in result.runs]


def test_another_config_in_a_run_directory_is_an_error(study):
    root, _, kwargs = study
    with pytest.raises(HacmError, match=r"base/seed0/pretrain: holds a run with another config \(masking.tau"):
        run_study({"base": {"masking.tau": 0.5}}, [0], root / "runs", **kwargs)


def test_slugs_and_bad_studies(tmp_path):
    assert slug("MAMP-style (motion masking, HA-CM tokens)") == "mamp-style-motion-masking-ha-cm-tokens"
    with pytest.raises(HacmError, match="clashing"):
        run_study({"a b": {}, "a-b": {}}, [0], tmp_path, pretrain_config="x", eval_config="y")
    with pytest.raises(HacmError, match="protocols"):
        run_study({"a": {}}, [0], tmp_path, pretrain_config="x", eval_config="y", protocols=["transfer"])


def test_a_variant_may_bring_its_own_configs(study):
    # a true baseline with its own tokenisation and downstream settings (e.g. MAMP's 120 frames)
    root, _, kwargs = study
    store = load_run(next((root / "runs" / "base" / "seed0").glob("pretrain"))).config.data.store
    pre, ev = root / "pre3.yaml", root / "eval3.yaml"
    tokens = {"t_patch": 3}
    pre.write_text(to_yaml(toy_config(store, model=tokens, train={"epochs": 1, "checkpoint_every": 0})))
    ev.write_text(to_yaml(toy_config(store, "linprobe", model=tokens,
                                     train={"epochs": 1, "warmup_epochs": 0, "checkpoint_every": 0})))
    result = run_study({"own tokens": {"config": pre, "eval_config": ev}}, [0], root / "runs", **kwargs)
    run = result.runs[0]
    assert load_run(run.dirs["pretrain"]).config.model.t_patch == 3
    assert load_run(run.dirs["linprobe"]).config.model.t_patch == 3
    assert load_run(run.dirs["linprobe"]).config.train.pretrained == str(run.dirs["pretrain"])


def test_workers_run_the_pipelines_in_parallel_processes(study, tmp_path):
    # two spawned workers do the same runs (up to float rounding with another thread count)
    root, result, kwargs = study
    variants = {k: VARIANTS[k] for k in ("base", "base again", "random encoder")}
    parallel = run_study(variants, [0], tmp_path / "runs", **{**kwargs, "workers": 2})
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["base", "random-encoder"]
    assert [r.variant for r in parallel.runs] == list(variants)
    for run in parallel.runs:
        assert set(run.correct) == {"linprobe", "knn3", "knn1"} and len(run.correct["knn1"]) == result.test_clips
    with pytest.raises(HacmError, match="workers"):
        run_study(variants, [0], tmp_path / "runs", **{**kwargs, "workers": 0})


def _result(rates: dict[str, float], clips: int = 300, seeds: int = 3) -> StudyResult:
    """Per-clip correctness drawn at the given accuracy for each variant and seed."""
    rng = np.random.default_rng(0)
    runs = [StudyRun(v, s, {}, {}, {"knn1": rng.random(clips) < rate}) for v, rate in rates.items() for s in range(seeds)]
    return StudyResult(runs, list(rates), list(range(seeds)), clips)


def test_best_is_named_only_outside_the_noise():
    clear = _result({"tau 0.3": 0.5, "tau 0.9": 0.9, "tau 3": 0.5})
    assert clear.best("knn1", clear.variants) == "tau 0.9"
    assert clear.best_verdict("knn1", clear.variants, "tau setting").startswith("tau 0.9 is significantly better")
    # better than one, not the other: no best
    assert clear.best("knn1", ["tau 0.3", "tau 3"]) is None
    noisy = _result({"tau 0.3": 0.80, "tau 0.9": 0.81, "tau 3": 0.80})
    assert noisy.best("knn1", noisy.variants) is None
    assert noisy.best_verdict("knn1", noisy.variants, "tau setting").startswith("No significant difference")
    assert noisy.best_verdict("knn1", ["tau 0.9"], "tau setting") == "Only one tau setting: nothing to compare."
    with pytest.raises(HacmError, match="two candidates"):
        noisy.best("knn1", ["tau 0.9"])


def test_a_probe_evaluated_once_says_its_best_epoch_is_the_last(study):
    _, result, _ = study           # the fixture's probe: 2 epochs, eval_every 2 -> one evaluation
    assert all(r.extras["linprobe_evaluations"] == 1 for r in result.runs if "linprobe_evaluations" in r.extras)
    assert result.headline("base")["best on test"].endswith(ONE_EVALUATION)
    assert any(k.startswith(BEST_ON_TEST) and ONE_EVALUATION in k for k in result.table("base")[0])
    evaluated_twice = StudyResult([StudyRun("a", 0, {}, {}, {"linprobe_evaluations": 2})], ["a"], [0], 1)
    assert evaluated_twice._best_on_test_label() == BEST_ON_TEST


def test_progress_names_the_phase_and_epoch_of_each_running_pipeline(study, tmp_path, monkeypatch):
    import shutil

    from hacm import study as study_module
    from hacm.rundir import METRICS_FILE, SUMMARY_FILE

    root, _, _ = study
    where = tmp_path / "seed0"
    shutil.copytree(root / "runs" / "base" / "seed0", where)
    probe = where / "linprobe"                # stopped after its first of two epochs
    (probe / SUMMARY_FILE).unlink()
    first_epoch = next(line for line in (probe / METRICS_FILE).read_text().splitlines() if '"kind": "epoch"' in line)
    (probe / METRICS_FILE).write_text(first_epoch + "\n" + '{"kind": "step", "ep')   # a line being written
    plan = study_module._Plan("base", 0, where, load_run(where / "pretrain").config,
                              {p: load_run(where / p).config for p in ("knn", "linprobe")})
    assert study_module.phase_of(plan) == "linprobe epoch 1/2"
    shutil.rmtree(probe)
    assert study_module.phase_of(plan) == "linprobe starting"

    status = tmp_path / "status"
    monkeypatch.setenv("HACM_STATUS_FILE", str(status))
    shown = study_module._StudyProgress(1, enabled=False)
    try:
        shown.start(plan)
        assert status.read_text().strip() == "study 0/1 pipelines: base seed 0: linprobe starting"
        shown.finish(plan)
        assert status.read_text().strip() == "study 1/1 pipelines"
    finally:
        shown.close()


def test_headline_flags_methods_below_the_untrained_encoder_and_gives_chance():
    """Drawn per-clip correctness, no training: MAE-style scores below the random encoder and is
    flagged; the page colours "lower" red, states the chance level and the published numbers."""
    from hacm.report.html import headline_section
    from hacm.study import StudyResult, StudyRun

    rng = np.random.default_rng(0)
    rates = {"HA-CM": 0.8, "MAE-style": 0.2, "random encoder": 0.4}
    labels = np.r_[np.zeros(100, int), np.arange(200) % 4 + 1]          # class 0: 100 of 300 clips
    runs = [StudyRun(m, s, {}, {}, {"linprobe": rng.random(300) < p}, {}, labels) for m, p in rates.items() for s in range(3)]
    configs = {"HA-CM": {"data.benchmark": "ntu60-xsub"}, "MAE-style": {"data.benchmark": "ntu60-xsub"}, "random encoder": None}
    head = StudyResult(runs, list(rates), [0, 1, 2], 300, configs).headline("HA-CM")
    assert head["chance"] == {"majority": 33.33, "uniform": 20.0, "classes": 5}
    assert {r["method"]: r["metrics"]["linear probe, last epoch"]["below untrained"] for r in head["rows"]} == {
        "HA-CM": False, "MAE-style": True, "random encoder": False}
    page = headline_section("methods", head)
    assert page.count("below the untrained encoder</div>") == 1
    assert '<span class="sig-lower">significantly lower</span>' in page and "sig-higher" not in page
    assert "chance 33.3" in page and "(5 classes): 33.3 % always answering the most frequent class" in page
    assert "Published results on ntu60-xsub" in page and "86.3" in page and "arXiv 2409.17951" in page
    table = {r["method"]: r["linear probe, last epoch (%)"] for r in
             StudyResult(runs, list(rates), [0, 1, 2], 300, configs).table("HA-CM")}
    assert [m for m, cell in table.items() if cell.endswith("(below the untrained encoder)")] == ["MAE-style"]


def test_published_table_in_the_docs_is_hacms_table():
    from hacm import published

    doc = (Path(__file__).resolve().parents[1] / "docs" / "published.md").read_text()
    assert published.markdown_table() in doc
    assert {p.benchmark for p in published.PUBLISHED} <= set(published.BENCHMARKS)
    assert {p.method for p in published.for_benchmark("pku2-xsub")} == {"HA-CM", "MAMP"}
    assert published.for_benchmark("synth-xsub") == []
