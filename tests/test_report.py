"""evaluate_predictions, format_table, write_plots on small hand-made tables (a stand-in Scaling)."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from perceptions.errors import PerceptionsError
from perceptions.evaluate import report as R
from perceptions.files import jsonable

STUDIES = ["safe", "lively"]


class LinearScaling:
    """Stand-in with Scaling's two methods: raw 0..90 -> 1..10 linearly (clipped); decile = ceil, 1..10."""

    def scale(self, raw, study):
        return np.clip(1 + np.asarray(raw, dtype=float) / 10, 1, 10)

    def decile(self, scaled, study):
        return np.clip(np.ceil(np.asarray(scaled, dtype=float)), 1, 10).astype(int)


def tables(n=40, seed=0):
    rng = np.random.default_rng(seed)
    ids = [f"{i:024x}" for i in range(n)]
    labels = pd.DataFrame({"path": [f"images/{i}.jpg" for i in ids], "location_id": ids,
                           "safe": rng.uniform(0, 90, n), "lively": rng.uniform(0, 90, n)})
    return ids, labels


def perfect_predictions(labels, scaling=LinearScaling()):
    pred = pd.DataFrame({"location_id": labels["location_id"]})
    for s in STUDIES:
        pred[f"{s}_score"] = scaling.scale(labels[s], s)
    return pred


def test_perfect_predictions_score_perfectly():
    _, labels = tables()
    m = R.evaluate_predictions(perfect_predictions(labels), labels, STUDIES, LinearScaling())
    for s in STUDIES:
        assert m[s]["n"] == 40
        assert m[s]["acc_exact_decile"] == 1.0 and m[s]["acc_within_1_decile"] == 1.0
        assert m[s]["spearman"] == pytest.approx(1.0) and m[s]["r2"] == pytest.approx(1.0)
        assert m[s]["mae"] == pytest.approx(0.0)
        assert "pairwise_acc" not in m[s] and "spearman_truth" not in m[s]
    assert m["mean"]["n"] == 80 and m["mean"]["spearman"] == pytest.approx(1.0)


def test_inverted_and_off_by_one_predictions():
    _, labels = tables()
    labels["safe"] = np.linspace(5, 75, 40)  # scaled 1.5..8.5: one decile up stays inside 1..10
    pred = perfect_predictions(labels)
    pred["safe_score"] = pred["safe_score"] + 1.0
    pred["lively_score"] = 11 - pred["lively_score"]
    m = R.evaluate_predictions(pred, labels, STUDIES, LinearScaling())
    assert m["safe"]["acc_exact_decile"] == 0.0 and m["safe"]["acc_within_1_decile"] == 1.0
    assert m["safe"]["mae"] == pytest.approx(1.0) and m["safe"]["spearman"] == pytest.approx(1.0)
    assert m["lively"]["spearman"] == pytest.approx(-1.0)


def test_unlabelled_unpredicted_and_unknown_rows_are_left_out():
    ids, labels = tables()
    labels.loc[:9, "safe"] = np.nan  # 10 images unrated for safe
    pred = perfect_predictions(labels.fillna(0.0))
    pred.loc[10:14, "safe_score"] = np.nan  # 5 images the model could not read
    extra = pd.DataFrame({"location_id": ["f" * 24], "safe_score": [5.0], "lively_score": [5.0]})
    m = R.evaluate_predictions(pd.concat([pred, extra]), labels, STUDIES, LinearScaling())
    assert m["safe"]["n"] == 25 and m["lively"]["n"] == 40
    assert m["safe"]["spearman"] == pytest.approx(1.0)


def test_a_study_without_labels_gives_nan_and_a_study_without_predictions_is_an_error():
    _, labels = tables()
    pred = perfect_predictions(labels)
    m = R.evaluate_predictions(pred, labels.drop(columns="lively"), STUDIES, LinearScaling())
    assert m["lively"]["n"] == 0 and math.isnan(m["lively"]["spearman"])
    assert m["mean"]["spearman"] == pytest.approx(1.0)  # NaN studies do not drag the mean
    with pytest.raises(PerceptionsError, match="lively_score"):
        R.evaluate_predictions(pred.drop(columns="lively_score"), labels, STUDIES, LinearScaling())


def test_votes_give_pairwise_accuracy_and_ceiling_truth_gives_truth_metrics():
    ids, labels = tables(n=6)
    labels["safe"] = [60.0, 50, 40, 30, 20, 10]
    pred = perfect_predictions(labels)
    votes = pd.DataFrame([
        ("safe", ids[0], ids[1], "left"),     # right
        ("safe", ids[0], ids[2], "right"),    # wrong
        ("safe", ids[1], ids[2], "equal"),    # excluded
        ("safe", ids[3], "0" * 23 + "z", "left"),  # image not predicted: skipped
        ("safe", ids[4], ids[3], "right"),    # right
        ("lively", ids[0], ids[1], "left"),   # another study
    ], columns=["study", "left", "right", "choice"])
    truth = pd.DataFrame({"location_id": ids, "safe": [6.0, 5, 4, 3, 1, 2], "lively": np.arange(6.0)})
    m = R.evaluate_predictions(pred, labels, STUDIES, LinearScaling(), votes=votes, truth=truth,
                               ceiling_splits=2)
    assert m["safe"]["pairwise_n"] == 3 and m["safe"]["pairwise_acc"] == pytest.approx(2 / 3)
    assert m["lively"]["pairwise_n"] == 1 and math.isnan(m["lively"]["pairwise_acc"])
    assert "label_ceiling" in m["safe"] and "label_reliability" in m["safe"]
    # truth [6,5,4,3,1,2] vs labels/predictions descending 60..10: one swapped pair
    expected = 1 - 6 * 2 / (6 * 35)
    assert m["safe"]["spearman_truth"] == pytest.approx(expected)
    assert m["safe"]["label_spearman_truth"] == pytest.approx(expected)
    assert m["mean"]["pairwise_n"] == 4
    # a perfect ranker calibrated to the labels: truth ranks [6,5,4,3,1,2] deal labels 6..1 with one swap;
    # scaled labels 2..7 -> deciles 7,6,5,4,2,3 vs 7,6,5,4,3,2: all within one
    assert m["safe"]["ceiling_within_1_decile"] == 1.0
    # a truth that ranks them the other way round: deciles 2..7 against 7..2, differences 5,3,1,1,3,5
    aligned = R.align_study(R.join_tables(pred, labels, STUDIES), "safe", LinearScaling())
    reverse = R.perfect_model_decile_accuracy(np.arange(6.0), aligned, "safe", LinearScaling())
    assert reverse == pytest.approx(2 / 6)


def test_format_table_and_json():
    ids, labels = tables()
    pred = perfect_predictions(labels)
    truth = pd.DataFrame({"location_id": ids, "safe": labels["safe"], "lively": labels["lively"]})
    m = R.evaluate_predictions(pred, labels.drop(columns="lively"), STUDIES, LinearScaling(), truth=truth)
    text = R.format_table(m)
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["study", "n", "+-1"]
    assert [ln.split()[0] for ln in lines[1:]] == ["safe", "lively", "mean"]
    assert "sp~truth" in lines[0] and "pairwise" not in lines[0]
    assert " - " in lines[2]  # lively has no labels: its metrics show as '-'
    assert "sp~truth / label~truth" in R.format_table(m, legend=True).splitlines()[-1]
    back = json.loads(json.dumps(jsonable(m), allow_nan=False))
    assert back["lively"]["spearman"] is None and back["safe"]["n"] == 40
    assert set(back) == {"safe", "lively", "mean"}


def test_write_plots_writes_two_pngs(tmp_path):
    _, labels = tables()
    pred = perfect_predictions(labels)
    pred["lively_score"] = 11 - pred["lively_score"]
    paths = R.write_plots(pred, labels, STUDIES, LinearScaling(), tmp_path / "plots")
    assert [p.name for p in paths] == ["pred_vs_true.png", "decile_confusion.png"]
    again = R.write_plots(pred, labels, STUDIES, LinearScaling(), tmp_path / "again",
                          prediction_deciles=LinearScaling())
    assert [p.name for p in again] == ["pred_vs_true.png", "decile_confusion.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000


class ShiftedDeciles:
    """Stand-in PredictionDeciles: the label deciles of the score one point higher."""

    def decile(self, scores, study):
        return LinearScaling().decile(np.asarray(scores, dtype=float) + 1.0, study)


def test_baselines_and_both_decile_definitions():
    _, labels = tables(n=100)
    # scaled 1 (decile 1), then 1.5, 2.5, ..., 9.5 (deciles 2..10): ten images in every decile
    labels["safe"] = np.repeat([0.0] + [(k - 1.5) * 10 for k in range(2, 11)], 10)
    pred = perfect_predictions(labels)
    m = R.evaluate_predictions(pred, labels, STUDIES, LinearScaling())
    safe = m["safe"]
    # no prediction_deciles: the label edges, so both definitions agree
    assert safe["acc_within_1_decile"] == safe["acc_within_1_decile_label_edges"] == 1.0
    assert safe["baseline_random_within_1_decile"] == pytest.approx(0.28)
    assert safe["baseline_random_exact_decile"] == pytest.approx(0.1)
    assert safe["baseline_constant_within_1_decile"] == pytest.approx(0.3)  # a stand-in: decile 6
    assert safe["baseline_constant_exact_decile"] == pytest.approx(0.1)
    assert safe["share_pred_decile_1"] == pytest.approx(0.1) and safe["share_pred_decile_10"] == pytest.approx(0.1)
    assert m["mean"]["baseline_random_within_1_decile"] == pytest.approx(
        np.mean([m[s]["baseline_random_within_1_decile"] for s in STUDIES]))
    # prediction_deciles cut the predictions: one decile up, so +-1 holds but exact fails; label edges unchanged
    shifted = R.evaluate_predictions(pred, labels, STUDIES, LinearScaling(), prediction_deciles=ShiftedDeciles())
    s = shifted["safe"]
    assert s["acc_within_1_decile"] == 1.0 and s["acc_exact_decile"] == pytest.approx(0.1)  # only decile 10 stays
    assert s["acc_within_1_decile_label_edges"] == 1.0
    assert s["share_pred_decile_1"] == 0.0 and s["share_pred_decile_10"] == pytest.approx(0.2)
    assert {k: v for k, v in s.items() if k.startswith("baseline")} == \
        {k: v for k, v in safe.items() if k.startswith("baseline")}


def test_the_constant_baseline_follows_the_training_median_of_a_real_scaling():
    from perceptions.data.labels import Scaling

    _, labels = tables(n=100)
    scaling = Scaling.fit(labels, STUDIES)
    pred = perfect_predictions(labels, scaling)
    m = R.evaluate_predictions(pred, labels, STUDIES, scaling)
    true = scaling.decile(scaling.scale(labels["safe"], "safe"), "safe")
    assert R.constant_decile(scaling, "safe") == 6
    assert m["safe"]["baseline_constant_within_1_decile"] == pytest.approx(np.isin(true, [5, 6, 7]).mean())
    assert m["safe"]["baseline_constant_exact_decile"] == pytest.approx(np.mean(true == 6))


def test_the_table_has_two_compact_baseline_columns_and_no_shares():
    _, labels = tables()
    m = R.evaluate_predictions(perfect_predictions(labels), labels, STUDIES, LinearScaling())
    text = R.format_table(m, legend=True)
    head = text.splitlines()[0].split()
    assert head[:6] == ["study", "n", "+-1", "dec", "exact", "const+-1"] and head[6] == "rand+-1"
    assert "share" not in text and "label_edges" not in text
    assert any(line.startswith("const+-1 / rand+-1") for line in text.splitlines())
