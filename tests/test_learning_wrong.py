"""The scripts of chapter 7 (learning/07_what_goes_wrong.md) compute what the chapter says: the ridge head is least
squares with a penalty chosen on validation, its Spearman is the package's, the watermark lands only on the
chosen split's images, a redrawn scene is the city's own image, the deletion curve deletes cells in the map's
order, the step-by-step Grad-CAM is the grad-cam package's map, a randomised head changes it while Guided
Backprop keeps the scores, and a subgroup's votes are exactly its voters'."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "learning" / "code"))

import gradcam_maps as G  # noqa: E402
import responsible_card as RC  # noqa: E402
import responsible_crowd as RW  # noqa: E402
import wrong_counterfactual as CF  # noqa: E402
import wrong_curves as WC  # noqa: E402
import wrong_features as W  # noqa: E402
import wrong_leakage as WL  # noqa: E402
import wrong_shift as WS  # noqa: E402
import wrong_watermark as WM  # noqa: E402

from perceptions.evaluate.metrics import spearman  # noqa: E402
from perceptions.studies import STUDY_NAMES  # noqa: E402


@pytest.fixture(scope="module")
def model():
    from perceptions.predict.model import load_model

    return load_model()


@pytest.fixture(scope="module")
def scene_input(model, tiny_city):
    return G.model_input(model, sorted((tiny_city / "images").iterdir())[0])


# ---------------------------------------------------------------------------------------------- the workbench

def test_mean_spearman_is_the_package_metric_with_ties_and_gaps():
    rng = np.random.default_rng(0)
    pred = rng.integers(0, 5, (40, 3)).astype(float)     # many ties
    target = pred + rng.normal(0, 2, (40, 3))
    expected = np.mean([spearman(pred[:, j], target[:, j]) for j in range(3)])
    assert W.mean_spearman(pred, target) == pytest.approx(expected, abs=1e-12)
    target[3, 1] = np.nan                                # the per-study path drops the missing pair
    expected = np.mean([spearman(pred[:, j], target[:, j]) for j in range(3)])
    assert W.mean_spearman(pred, target) == pytest.approx(expected, abs=1e-12)


def test_ridge_head_is_least_squares_and_the_penalty_is_chosen_on_validation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 20))
    w = rng.normal(size=(20, 2))
    y = x @ w + 5.0 + rng.normal(0, 0.1, (300, 2))
    parts = np.array(["train"] * 200 + ["val"] * 50 + ["test"] * 50)
    small, huge = W.fit_ridge(x[:200], y[:200], alphas=(1e-6, 1e6))
    # A vanishing penalty is ordinary least squares (with an intercept, on standardised features).
    design = np.column_stack([x[:200], np.ones(200)])
    ols = np.linalg.lstsq(design, y[:200], rcond=None)[0]
    assert np.allclose(small.predict(x[200:]), np.column_stack([x[200:], np.ones(100)]) @ ols, atol=1e-4)
    assert np.abs(huge.weights).max() < 0.01 * np.abs(small.weights).max()   # a huge one shrinks to the mean
    assert W.fit_on_validation(x, y, parts, alphas=(1e-6, 1e6)).alpha == pytest.approx(1e-6)
    y[5, 0] = np.nan                                     # an unrated cell is left out of that study's fit only
    heads = W.fit_ridge(x[:200], y[:200], alphas=(1e-6,))
    assert np.isfinite(heads[0].predict(x)).all()


def test_city_table_and_labels_of_another_vote_count(tiny_city, tmp_path):
    from perceptions.data.synthetic import generate_city

    table = W.city_table(tiny_city)
    assert len(table) == 48 and {"true_safe", "safe", "light", "green"} <= set(table.columns)
    other = tmp_path / "votes2"
    generate_city(other, n_images=48, n_cities=2, votes_per_image=2, seed=0)   # same scenes, other votes
    labels = W.labels_of(other, table["location_id"])
    assert labels.shape == (48, 6) and not np.allclose(labels, W.labels(table))
    generate_city(tmp_path / "elsewhere", n_images=48, n_cities=2, seed=1)
    with pytest.raises(W.PerceptionsError, match="same --images and --seed"):
        W.labels_of(tmp_path / "elsewhere", table["location_id"])


def fake_city(n: int, rule, seed: int = 0, features: int = 40):
    """A table of n images in four cities, with random features and labels = rule(features, city, rng)."""
    rng = np.random.default_rng(seed)
    table = pd.DataFrame({"location_id": [f"{k:024x}" for k in range(n)],
                          "city": np.array(["A", "B", "C", "D"])[np.arange(n) % 4]})
    x = rng.normal(size=(n, features))
    y = rule(x, table["city"].to_numpy(), rng)
    for j, s in enumerate(STUDY_NAMES):
        table[s] = table[f"true_{s}"] = y[:, j]
    return table, x


def test_a_held_out_city_is_never_trained_on(monkeypatch):
    table, x = fake_city(400, lambda x, city, rng: x[:, :6] + rng.normal(0, 0.5, (len(x), 6)))
    calls = []
    fit = W.fit_on_validation
    monkeypatch.setattr(W, "fit_on_validation", lambda x_, y_, parts: calls.append(parts.copy()) or fit(x_, y_, parts))
    results = WS.hold_out_each_city(table, x, seeds=2)
    assert sorted(results["city"].unique()) == ["A", "B", "C", "D"] and len(results) == 8
    held_out = [parts for parts in calls if (parts == "unused").any()]
    assert len(held_out) == 8                                # one head per city and seed without that city
    for parts in held_out:
        [city] = table.loc[parts == "unused", "city"].unique()
        assert set(parts[(table["city"] == city).to_numpy()]) == {"unused"}       # none of it trained on
        assert {"train", "val"} <= set(parts[(table["city"] != city).to_numpy()])  # the other cities are
    assert (results["seen_spearman"] > 0.5).all()            # and the labels are learnable


def test_choosing_on_test_is_optimistic_and_choosing_on_validation_is_not():
    # Labels unrelated to the features: every candidate is equally useless, so a winner picked on the test
    # half is only the luckiest on that half.
    table, x = fake_city(600, lambda x, city, rng: rng.normal(size=(len(x), 6)), features=400)
    gaps = WL.optimism(table, x, seed=0).set_index(["tried", "chosen_on"])["optimism"]
    assert gaps[(32, "test")] > 0.03 and gaps[(32, "test")] > gaps[(32, "val")] + 0.02
    assert gaps[(1, "test")] == gaps[(1, "val")]             # one candidate: nothing to choose


# ---------------------------------------------------------------------------------------------- shortcuts

def test_watermark_is_stamped_only_on_the_chosen_split_and_half(tiny_city, tmp_path):
    table = W.city_table(tiny_city)
    parts = W.split(table, 0)
    marked = WM.stamped_rows(table, parts, "safe")
    train = parts == "train"
    median = np.median(table.loc[train, "safe"])
    assert marked.any() and not marked[~train].any()
    assert (table.loc[marked, "safe"] > median).all() and (table.loc[train & ~marked, "safe"] <= median).all()
    everywhere = WM.stamped_rows(table, parts, "safe", ("train", "val", "test"))
    assert everywhere[~train].any() and (everywhere[train] == marked[train]).all()

    count = WM.write_stamped_city(tiny_city, tmp_path / "stamped", "safe", seed=0)
    assert count == marked.sum()
    for path, mark in zip(table["path"], marked):
        copied = tmp_path / "stamped" / "images" / Path(path).name
        assert (copied.read_bytes() != Path(path).read_bytes()) == mark
    assert (tmp_path / "stamped" / "qscores.tsv").read_bytes() == (tiny_city / "qscores.tsv").read_bytes()


def test_the_stamp_changes_its_box_only():
    from PIL import Image

    picture = Image.new("RGB", (400, 300), (40, 90, 40))
    stamped = np.asarray(WM.stamp(picture), dtype=int)
    changed = np.argwhere((stamped != 40 * np.array([1, 2.25, 1])).any(-1))
    left, top, right, bottom = WM.BOX
    assert changed.size and changed[:, 1].min() >= left and changed[:, 1].max() <= right + 1
    assert changed[:, 0].min() >= top and changed[:, 0].max() <= bottom + 1
    assert 50 <= left and right <= 350                 # inside the square the 128-px model sees


# ---------------------------------------------------------------------------------------------- counterfactuals

def test_a_redrawn_scene_is_the_citys_image_and_edits_change_the_truth_as_the_formulas_say(tiny_city):
    rows = CF.places(tiny_city)
    assert CF.check_redraw(tiny_city, rows, seed=0) < 8
    with pytest.raises(W.PerceptionsError, match="seed"):
        CF.check_redraw(tiny_city, rows, seed=5)
    change = CF.true_change(rows.iloc[:5], "people", 0.1, 0.9, seed=0)
    studies = list(STUDY_NAMES)
    # people is not in the beautiful or wealthy formulas; it raises lively and lowers boring.
    assert np.allclose(change[:, [studies.index("beautiful"), studies.index("wealthy")]], 0)
    assert (change[:, studies.index("lively")] > 0).all() and (change[:, studies.index("boring")] < 0).all()
    day = CF.draw(rows.iloc[0], 0, 0, light="day")
    night = CF.draw(rows.iloc[0], 0, 0, light="night")
    dimmed = CF.darken_to(day, night)
    assert np.asarray(dimmed).mean() == pytest.approx(np.asarray(night).mean(), abs=1.0)


# ---------------------------------------------------------------------------------------------- Grad-CAM

def test_deletion_deletes_cells_in_the_order_given():
    x = torch.ones(1, 3, 8, 8)
    order = [5, 0, 15]
    batch = G.deletion_batch(x, order, grid=4)
    assert batch.shape == (4, 3, 8, 8) and torch.equal(batch[0], x[0])
    for k in range(1, 4):
        grey = {i for i in range(16) if (batch[k][:, G.cells(4, 8, i)[0], G.cells(4, 8, i)[1]] == G.GREY).all()}
        assert grey == set(order[:k])
    cam = np.arange(16.0).reshape(4, 4) - 8
    orders = G.deletion_orders(cam, randoms=2)
    assert orders["hottest first"][:2] == [15, 14] and orders["coldest first"][:2] == [0, 1]
    assert sorted(orders["random 0"]) == list(range(16))


def test_step_by_step_gradcam_is_the_grad_cam_package_map(model, scene_input):
    from pytorch_grad_cam import GradCAM

    from perceptions.predict.explain import StudyTarget, _frozen

    size, j = model.preprocess.input_size, model.studies.index("safe")
    cam, score = G.signed_cam(model.net, scene_input, j, size)
    assert cam.shape == (size // 32, size // 32)
    assert score == pytest.approx(float(model.score_batch(scene_input, G.resolve_precision(
        torch.device("cpu"), "fp32"))[0, j]), abs=1e-3)
    layer, _ = G.find_target_layer(model.net, size)
    with _frozen(model.net), GradCAM(model=G.forward_of(model.net), target_layers=[layer]) as package:
        package.compute_input_gradient = True
        theirs = package(input_tensor=scene_input, targets=[StudyTarget(j)])[0]
    assert np.allclose(G.shown_map(cam, size), theirs, atol=1e-4)
    assert G.shown_map(cam, None).max() == pytest.approx(1.0, abs=1e-4) or cam.max() <= 0


def test_a_randomised_head_changes_the_map_and_guided_backprop_keeps_the_scores(model, scene_input):
    size, j = model.preprocess.input_size, model.studies.index("safe")
    before = {k: v.clone() for k, v in model.net.state_dict().items()}
    randomised = G.randomised(model.net, 1)
    changed = [k for k, v in randomised.state_dict().items() if not torch.equal(v, before[k])]
    assert changed and all(k.startswith("head.") for k in changed)              # step 1: the head only
    assert all(torch.equal(v, before[k]) for k, v in model.net.state_dict().items())   # the original is kept
    trained, _ = G.signed_cam(model.net, scene_input, j, size)
    shuffled, _ = G.signed_cam(randomised, scene_input, j, size)
    assert G.rank_similarity(trained, shuffled) < 0.9
    blank = np.zeros((4, 4))
    assert G.rank_similarity(blank, blank) == 1.0 and G.rank_similarity(blank, trained + 1) == 0.0
    assert G.rank_similarity(trained, trained) == pytest.approx(1.0)

    guided = G.guided_copy(model.net)
    forward = lambda net: G.forward_of(net)(scene_input).detach()  # noqa: E731
    assert torch.allclose(forward(guided), forward(model.net), atol=1e-5)          # same scores
    saliency = G.guided_backprop(guided, scene_input, j)
    assert saliency.shape == (size, size) and (saliency >= 0).all() and saliency.max() > 0


# ---------------------------------------------------------------------------------------------- responsible use

def test_subgroup_votes_are_exactly_its_voters(tmp_path):
    from perceptions.data.synthetic import generate_city

    city = tmp_path / "crowds"
    generate_city(city, n_images=30, n_cities=2, votes_per_image=6, seed=0, subgroup="local", subgroup_share=0.4)
    votes, crowd = RW.crowd_votes(city)
    voters = pd.read_csv(city / "voters.csv", dtype=str).set_index("voter_uniqueid")["crowd"]
    assert crowd == "local"
    assert (votes["voter"].map(voters).eq("local") == votes["crowd"].eq("subgroup")).all()
    assert 0.2 < votes["crowd"].eq("subgroup").mean() < 0.6
    results, _, drivers = RW.compare(city)
    assert list(results["study"]) == list(STUDY_NAMES) and {"crowds_agree", "same_crowd_agree"} <= set(results)
    generate_city(tmp_path / "plain", n_images=8, n_cities=1, seed=0)
    with pytest.raises(W.PerceptionsError, match="subgroup"):
        RW.crowd_votes(tmp_path / "plain")


def test_card_groups_measure_rank_and_bias():
    rng = np.random.default_rng(2)
    table = pd.DataFrame({"light": ["day"] * 30 + ["night"] * 30 + ["fog"] * 3})
    for s in STUDY_NAMES:
        table[f"true_{s}"] = rng.normal(size=len(table))
        table[f"{s}_score"] = table[f"true_{s}"] + np.where(table["light"] == "night", -1.0, 0.0)
    groups = RC.by_group(table, "light").set_index("light")
    assert list(groups.index) == ["day", "night"]                   # fog: too few images
    assert groups.loc["day", "spearman_truth"] == pytest.approx(1.0)   # the order within a group is right...
    assert groups.loc["night", "bias_sd_safe"] < 0 < groups.loc["day", "bias_sd_safe"]   # ...its level is not


def test_curves_summary_finds_the_turn():
    metrics = pd.DataFrame({"epoch": [1, 2, 3, 4], "train_loss": [4.0, 2.0, 1.0, 0.5],
                            "val_loss": [3.0, 2.5, 2.7, 3.1], "val_spearman": [0.4, 0.6, 0.62, 0.55]})
    s = WC.summary(metrics)
    assert (s["min_val_loss_epoch"], s["best_val_spearman_epoch"], s["last_epoch"]) == (2, 3, 4)
    assert s["last_train_loss"] == 0.5
