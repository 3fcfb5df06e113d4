"""Baselines (a constant, random ranks) computed by hand, calibrated predicted deciles (PredictionDeciles), and
`evaluate --json` reporting both beside the model's decile accuracy on a run trained on the tiny city."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from perceptions.data.labels import Scaling
from perceptions.errors import PerceptionsError
from perceptions.evaluate import baselines as B
from perceptions.predict.inference import PredictionDeciles, to_deciles

UNIFORM = np.repeat(np.arange(1, 11), 7)  # 70 images, 7 in every decile


# ------------------------------------------------------------------------------------------- baselines

def test_uniform_deciles_give_the_textbook_baselines():
    assert B.random_accuracy(UNIFORM, tolerance=1) == pytest.approx(28 / 100)  # 10 diagonal + 2 x 9 off
    assert B.random_accuracy(UNIFORM, tolerance=0) == pytest.approx(0.1)
    assert B.constant_accuracy(UNIFORM, 6, tolerance=1) == pytest.approx(0.3)  # deciles 5, 6, 7
    assert B.constant_accuracy(UNIFORM, 6, tolerance=0) == pytest.approx(0.1)
    assert B.constant_accuracy(UNIFORM, 1, tolerance=1) == pytest.approx(0.2)  # the edge has one neighbour
    m = B.baseline_metrics(UNIFORM)
    assert m == pytest.approx({"baseline_constant_within_1_decile": 0.3, "baseline_constant_exact_decile": 0.1,
                               "baseline_random_within_1_decile": 0.28, "baseline_random_exact_decile": 0.1})


def test_skewed_histograms_by_hand():
    # half in decile 1, half in decile 10: random ranks agree half the time, a constant at 6 never
    split = [1, 1, 10, 10]
    assert B.random_accuracy(split, 1) == pytest.approx(0.5) and B.random_accuracy(split, 0) == pytest.approx(0.5)
    assert B.constant_accuracy(split, 6, 1) == 0.0
    # p = (0.5, 0.25, 0.25) on deciles 4, 5, 6: within one unless 4 meets 6 (2 x 0.5 x 0.25)
    three = [4, 4, 5, 6]
    assert B.random_accuracy(three, 1) == pytest.approx(1 - 2 * 0.5 * 0.25)
    assert B.random_accuracy(three, 0) == pytest.approx(0.25 + 0.0625 + 0.0625)
    assert B.constant_accuracy(three, 6, 1) == pytest.approx(0.5)  # deciles 5 and 6
    # missing deciles (0, NaN) are left out; nothing left -> NaN
    assert B.random_accuracy([0, np.nan, 3], 0) == pytest.approx(1.0)
    assert np.isnan(B.random_accuracy([], 1)) and np.isnan(B.constant_accuracy([0], 6, 1))


def test_random_baseline_is_what_random_permutations_score_on_average():
    rng = np.random.default_rng(0)
    true = rng.choice(np.arange(1, 11), size=5000, p=np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum())
    sampled = np.mean([np.mean(np.abs(rng.permutation(true) - true) <= 1) for _ in range(50)])
    assert B.random_accuracy(true, 1) == pytest.approx(sampled, abs=0.005)


def test_the_constant_lands_where_scaling_puts_the_training_median():
    labels = pd.DataFrame({"safe": np.arange(100.0)})
    scaling = Scaling.fit(labels, ["safe"])
    edges = scaling.params["safe"]["decile_edges"]
    assert B.constant_decile(edges) == scaling.decile(edges[B.MEDIAN_EDGE], "safe") == 6
    tied = [1, 2, 3, 4, 5, 5, 5, 8, 9]  # the median ties with the next two edges: side="right" goes past them
    assert B.constant_decile(tied) == 8
    assert B.constant_decile([1.0] * 3) == B.MEDIAN_DECILE  # not 9 edges: the default


def test_extreme_decile_shares():
    assert B.extreme_decile_shares(UNIFORM) == pytest.approx({"share_pred_decile_1": 0.1,
                                                              "share_pred_decile_10": 0.1})
    assert B.extreme_decile_shares([5, 5, 6, 10]) == pytest.approx({"share_pred_decile_1": 0.0,
                                                                   "share_pred_decile_10": 0.25})


# ----------------------------------------------------------------------------------- PredictionDeciles

def test_prediction_deciles_fit_round_trip_and_tie_rules():
    scores = np.column_stack([np.arange(1, 101) / 10.0, np.linspace(1, 10, 100)])
    scores[:50, 1] = np.nan  # an unrated half of the second study is left out of its edges
    fitted = PredictionDeciles.fit(scores, ["safe", "lively"])
    assert fitted.edges["safe"] == pytest.approx(np.quantile(scores[:, 0], np.arange(1, 10) / 10))
    assert fitted.counts == {"safe": 100, "lively": 50}
    back = PredictionDeciles.from_dict(json.loads(json.dumps(fitted.to_dict())))
    assert back.edges == fitted.edges and back.counts == fitted.counts
    # Scaling.decile's rules: a score on an edge goes up, NaN -> 0, a scalar stays a scalar
    edge = fitted.edges["safe"][0]
    assert back.decile(edge, "safe") == 2 and back.decile(np.nextafter(edge, 0), "safe") == 1
    assert back.decile(np.nan, "safe") == 0 and isinstance(back.decile(5.0, "safe"), int)
    both = to_deciles(scores[:, :1], back, ["safe"])
    assert both.dtype == np.int64 and np.bincount(both[:, 0])[1:].tolist() == [10] * 10
    for bad in ({"studies": {"safe": {"decile_edges": [1, 2, 3]}}},
                {"studies": {"safe": {"decile_edges": [9, 8, 7, 6, 5, 4, 3, 2, 1]}}}, {"edges": []}, []):
        with pytest.raises(PerceptionsError, match="prediction_deciles"):
            PredictionDeciles.from_dict(bad)
    with pytest.raises(PerceptionsError, match="wealthy"):
        back.decile([5.0], "wealthy")


def test_calibrated_edges_fill_every_decile_where_label_edges_leave_the_ends_empty():
    rng = np.random.default_rng(1)
    truth = rng.uniform(1, 10, size=(4000, 2))
    shrunk = np.clip(5.5 + 0.3 * (truth - 5.5) + rng.normal(0, 0.3, truth.shape), 1, 10)  # towards the mean
    studies = ["safe", "lively"]
    scaling = Scaling.fit(pd.DataFrame(truth, columns=studies), studies)  # label edges
    calibrated = PredictionDeciles.fit(shrunk, studies)
    for j, s in enumerate(studies):
        share = np.bincount(to_deciles(shrunk, calibrated, studies)[:, j], minlength=11)[1:] / len(shrunk)
        assert share == pytest.approx(np.full(10, 0.1), abs=0.005)
        by_labels = np.bincount(to_deciles(shrunk, scaling, studies)[:, j], minlength=11)[1:] / len(shrunk)
        assert by_labels[0] < 0.01 and by_labels[-1] < 0.01


# ------------------------------------------------------------------------- end to end on the tiny city

STUDIES = ["safe", "lively", "beautiful", "wealthy", "boring", "depressing"]
BASELINE_KEYS = ("baseline_constant_within_1_decile", "baseline_constant_exact_decile",
                 "baseline_random_within_1_decile", "baseline_random_exact_decile")


@pytest.fixture(scope="module")
def quick_run(tiny_city, tmp_path_factory):
    """A frozen-only regression run on the tiny city (one head-only epoch at 32 px)."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        config = TrainConfig(data=str(tiny_city), out=str(tmp_path_factory.mktemp("runs")), image_size=32,
                             batch_size=8, freeze_epochs=1, epochs=0, loss="regression", workers=0,
                             progress=False, device="cpu", seed=3)
        return train(config)
    finally:
        torch.set_num_threads(before)


def test_the_package_stores_prediction_deciles_and_the_run_uses_them(quick_run):
    from perceptions.predict.model import load_model

    model = load_model(quick_run / "model")
    assert model.decile_source == "training predictions" and "training predictions" in repr(model)
    assert isinstance(model.prediction_deciles, PredictionDeciles)
    assert model.prediction_deciles.studies == STUDIES
    frame = pd.read_csv(quick_run / "test_predictions.csv")
    scores = frame[[f"{s}_score" for s in STUDIES]].to_numpy()
    assert np.array_equal(frame[[f"{s}_decile" for s in STUDIES]].to_numpy(), model.deciles(scores))
    assert np.array_equal(frame[[f"{s}_decile_label_edges" for s in STUDIES]].to_numpy(),
                          to_deciles(scores, model.scaling, STUDIES))
    test = json.loads((quick_run / "summary.json").read_text())["test"]
    for s in STUDIES + ["mean"]:
        assert {"acc_within_1_decile", "acc_within_1_decile_label_edges", "share_pred_decile_1",
                "share_pred_decile_10", *BASELINE_KEYS} <= set(test[s])


def test_evaluate_json_reports_the_baselines_beside_the_accuracy(quick_run, tiny_city, tmp_path, capsys):
    from perceptions.cli import main

    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(quick_run / "model"), "--data", str(tiny_city), "--json", str(out),
                 "--workers", "0", "--device", "cpu", "--no-progress"]) == 0
    table = capsys.readouterr().out
    assert "const+-1" in table and "rand+-1" in table
    metrics = json.loads(out.read_text())
    for s in STUDIES + ["mean"]:
        m = metrics[s]
        assert {"acc_within_1_decile", "acc_within_1_decile_label_edges", *BASELINE_KEYS} <= set(m), s
        assert 0 <= m["baseline_random_within_1_decile"] <= 1 and 0 <= m["baseline_constant_within_1_decile"] <= 1
        assert m["baseline_random_exact_decile"] <= m["baseline_random_within_1_decile"]
        assert 0 <= m["share_pred_decile_1"] <= 1 and 0 <= m["share_pred_decile_10"] <= 1
