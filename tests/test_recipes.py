"""Recipe runs of the experiment matrix: candidates compared on a validation split without
the test set, then the chosen recipe's final models tested once each, and their ensemble."""
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

from fastconv.experiments import execute_run
from fastconv.serialization import load_model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench import experiments as E  # noqa: E402
from bench._report import VERDICTS, collect, ensemble_accuracy, recipe_table  # noqa: E402

CANDIDATES = (
    {"name": "adam", "model": "convnet-bn", "validation": 50, "batch_size": 25,
     "augment": {"rotate": 0.1, "translate": 0.1, "scale": [0.9, 1.1], "shear": 0.1},
     "optimizer": {"name": "adam", "lr": 2e-3},
     "schedule": {"name": "onecycle", "max_lr": 5e-3, "epochs": 2}, "epochs": 2},
    {"name": "sgd", "model": "mlp", "validation": 0.1, "batch_size": 20,
     "label_smoothing": 0.1, "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9,
                                           "lr_decay": 0.0}, "epochs": 2},
)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory):
    preset = dataclasses.replace(E.PRESETS["smoke"], recipes=CANDIDATES, recipe_choice="sgd",
                                 recipe_seeds=(1, 2, 3))
    runs = E.family_best(preset)
    out = str(tmp_path_factory.mktemp("recipes"))
    records = [execute_run(r.config, out, r.key, threads=1) for r in runs]
    return runs, out, records


def test_search_candidates_never_see_the_test_set(matrix):
    runs, out, records = matrix
    search = [(r, rec) for r, rec in zip(runs, records) if not r.config["test"]]
    assert [r.label for r, _ in search] == ["search: recipe adam", "search: recipe sgd"]
    for run, rec in search:
        assert rec["status"] == "ok", rec["error"]
        assert rec["test_evaluations"] == 0 and rec["test_accuracy"] is None
        assert not os.path.exists(os.path.join(out, "runs", run.key, "test_probabilities.npz"))
        history = rec["history"]
        assert all("test_accuracy" not in h for h in history)
        # The epoch kept is the best on validation.
        vals = [h["val_accuracy"] for h in history]
        assert rec["selected_epoch"] == 1 + int(np.argmax(vals))
        assert rec["selected_value"] == max(vals)


def test_final_models_are_tested_once_at_the_chosen_epoch(matrix):
    runs, out, records = matrix
    finals = [(r, rec) for r, rec in zip(runs, records) if r.config["test"]]
    assert [r.config["seed"] for r, _ in finals] == [1, 2, 3]
    for run, rec in finals:
        folder = os.path.join(out, "runs", run.key)
        assert rec["test_evaluations"] == 1
        model, meta = load_model(os.path.join(folder, "best_model.npz"))
        assert meta["best"]["epoch"] == rec["selected_epoch"]
        with np.load(os.path.join(folder, "test_probabilities.npz")) as f:
            p, labels = f["probabilities"], f["labels"]
        assert p.dtype == np.float32 and np.allclose(p.sum(axis=1), 1, atol=1e-5)
        assert np.mean(np.argmax(p, axis=1) == labels) == pytest.approx(rec["test_accuracy"])
        assert os.path.getsize(os.path.join(folder, "test_probabilities.npz")) < 1 << 20
        config = json.load(open(os.path.join(folder, "config.json")))
        assert config["validation"] == 0.1 and config["test"] is True


def test_report_states_the_choice_and_the_ensemble(matrix):
    runs, out, _ = matrix
    results = collect(runs, out)
    finals = [r for r in runs if r.config["test"]]
    table = recipe_table(runs, results)
    assert table.count("not evaluated") == 2
    acc = ensemble_accuracy(results, finals)
    mean = np.mean([results[r.key]["probabilities"][0] for r in finals], axis=0)
    labels = results[finals[0].key]["probabilities"][1]
    assert acc == pytest.approx(np.mean(np.argmax(mean, axis=1) == labels))
    assert f"ensemble of the 3 final models (mean class probability) | – | {100 * acc:.2f}%" \
        in table
    text = VERDICTS["best"](runs, results, 100)
    assert "2 candidate recipes tried" in text
    chosen_is_best = (results[runs[1].key]["val_accuracy"] >=
                      results[runs[0].key]["val_accuracy"])
    assert ("is the candidate with the best validation" in text) == chosen_is_best
    assert "Their ensemble (mean class probability of 3 models)" in text


def test_a_rerun_trains_nothing(matrix):
    runs, out, records = matrix
    again = [execute_run(r.config, out, r.key, threads=1) for r in runs]
    assert [a["finished_at"] for a in again] == [r["finished_at"] for r in records]


def test_recipe_settings_are_checked():
    with pytest.raises(ValueError, match="unknown settings"):
        E.recipe_config(E.PRESETS["smoke"], {"name": "x", "momentum": 0.9})
