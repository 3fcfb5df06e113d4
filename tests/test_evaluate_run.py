"""The library behind `perceptions evaluate`: reading a data folder, rebuilding the split (on a folder that
changed since training too), the command's guards, `--predictions`."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from perceptions.cli import main
from perceptions.data import folder as F
from perceptions.data.labels import Scaling, split_from_spec, split_labels, split_spec
from perceptions.data.placepulse import read_qscores, write_qscores
from perceptions.data.scoring import score_votes
from perceptions.errors import PerceptionsError
from perceptions.evaluate import run as E
from perceptions.evaluate.report import evaluate_predictions

STUDIES = ["safe", "beautiful"]


def make_data_folder(root, n_images=24, votes_per_image=8, seed=0, truth=True):
    """A tiny PP2-layout folder: 8x8 images, a Thurstone crowd's votes, their TrueSkill qscores, truth.csv."""
    rng = np.random.default_rng(seed)
    images = root / "images"
    images.mkdir(parents=True)
    ids = [f"{i:024x}" for i in range(1, n_images + 1)]
    for i, loc in enumerate(ids):
        city = "Alpha" if i % 2 else "Beta"
        name = f"{51 + i / 100:.4f}_{-0.1:.4f}_{loc}_{city}.JPG"
        Image.new("RGB", (8, 8), (10 * i % 255, 40, 90)).save(images / name)
    true_values = pd.DataFrame({"location_id": ids, **{s: rng.normal(size=n_images) for s in STUDIES}})
    rows = []
    for s in STUDIES:
        for _ in range(n_images * votes_per_image // 2):
            a, b = rng.choice(n_images, 2, replace=False)
            seen = true_values[s][a] - true_values[s][b] + rng.normal(scale=0.7)
            rows.append((s, ids[a], ids[b], "equal" if abs(seen) < 0.1 else ("left" if seen > 0 else "right")))
    votes = pd.DataFrame(rows, columns=["study", "left", "right", "choice"])
    site = pd.DataFrame({"_id": [f"{i:024x}" for i in range(len(votes))], "choice": votes["choice"],
                         "left": votes["left"], "right": votes["right"],
                         "study_id": votes["study"].map({"safe": "50a68a51fdc9f05596000002",
                                                         "beautiful": "5217c351ad93a7d3e7b07a64"})})
    site.to_csv(root / "votes.tsv", sep="\t", index=False)
    write_qscores(score_votes(votes), root / "qscores.tsv")
    if truth:
        true_values.to_csv(root / "truth.csv", index=False)
    return ids, votes, true_values


def test_load_folder_reads_labels_votes_and_truth(tmp_path):
    ids, votes, truth = make_data_folder(tmp_path)
    data = F.load_folder(tmp_path, STUDIES)
    assert len(data.labels) == 24 and set(STUDIES) <= set(data.labels.columns)
    assert len(data.votes) == len(votes) and set(data.votes["study"]) == set(STUDIES)
    assert data.truth["location_id"].tolist() == ids  # ids read as text, never as numbers
    (tmp_path / "truth.csv").unlink()
    (tmp_path / "votes.tsv").unlink()
    data = F.load_folder(tmp_path, STUDIES)
    assert data.votes is None and data.truth is None


def test_missing_pieces_of_a_data_folder_are_one_clear_error(tmp_path):
    with pytest.raises(PerceptionsError, match="does not exist"):
        F.load_folder(tmp_path / "nowhere", STUDIES)
    (tmp_path / "images").mkdir()
    with pytest.raises(PerceptionsError, match="qscores.tsv"):
        F.load_folder(tmp_path, STUDIES)
    (tmp_path / "truth.csv").write_text("")
    with pytest.raises(PerceptionsError, match="truth.csv: not a readable CSV"):
        F.read_truth(tmp_path / "truth.csv")
    (tmp_path / "truth.csv").write_text("a,b\n1,2\n")
    with pytest.raises(PerceptionsError, match="location_id"):
        F.read_truth(tmp_path / "truth.csv")


def test_select_split_rebuilds_the_training_split(tmp_path):
    make_data_folder(tmp_path)
    labels = F.load_folder(tmp_path, STUDIES).labels
    args = {"method": "random", "seed": 3, "val_frac": 0.1, "test_frac": 0.25}
    spec = split_spec(labels, **args)
    meta = {"data": {"split": spec}}
    expected = labels[(split_labels(labels, **args) == "test").to_numpy()]
    test = E.select_split(labels, meta, "test")
    assert test["location_id"].tolist() == expected["location_id"].tolist() and len(test) > 0
    assert len(E.select_split(labels, meta, "all")) == 24
    # a package trained on a --max-images sample: membership is by hash alone, the cut is not applied again
    cut = E.select_split(labels, {"data": {"split": spec, "max_images": 12}}, "test")
    assert cut["location_id"].tolist() == test["location_id"].tolist()
    with pytest.raises(PerceptionsError, match="does not record the split"):
        E.select_split(labels, {}, "test")
    with pytest.raises(PerceptionsError, match="--split"):
        E.select_split(labels, meta, "holdout")
    # a package made before hashed splits: one line, retrain or --split all
    with pytest.raises(PerceptionsError, match="old split.*--split all"):
        E.select_split(labels, {"data": {"split": args}}, "test")
    assert len(E.select_split(labels, {"data": {"split": args}}, "all")) == 24
    # a folder with none of the model's test images
    train_only = labels[(split_labels(labels, **args) == "train").to_numpy()]
    with pytest.raises(PerceptionsError, match="none of the .* labelled images .* in the model's test split"):
        E.select_split(train_only, meta, "test")


def test_real_scaling_and_label_scorer_with_the_report(tmp_path):
    ids, _, truth = make_data_folder(tmp_path, n_images=40)
    data = F.load_folder(tmp_path, STUDIES)
    scaling = Scaling.fit(data.labels, STUDIES)
    pred = data.labels[["location_id"]].copy()
    for s in STUDIES:
        pred[f"{s}_score"] = scaling.scale(data.labels[s], s)
    m = evaluate_predictions(pred, data.labels, STUDIES, scaling, votes=data.votes, truth=data.truth,
                             score_fn=F.label_scorer("trueskill.score"), ceiling_splits=2)
    for s in STUDIES:
        assert m[s]["acc_exact_decile"] == 1.0 and m[s]["spearman"] == pytest.approx(1.0)
        # predictions equal to the labels: same Spearman against truth as the labels themselves
        assert m[s]["spearman_truth"] == pytest.approx(m[s]["label_spearman_truth"])
        assert 0 < m[s]["label_ceiling"] <= 1 and m[s]["pairwise_n"] > 100
    # The labels turned upside down: every rank metric flips sign, and decisive votes go the other way.
    flipped = pred.copy()
    for s in STUDIES:
        flipped[f"{s}_score"] = 11.0 - pred[f"{s}_score"]
    f = evaluate_predictions(flipped, data.labels, STUDIES, scaling, votes=data.votes, truth=data.truth,
                             score_fn=F.label_scorer("trueskill.score"), ceiling_splits=2)
    for s in STUDIES:
        assert f[s]["spearman"] == pytest.approx(-1.0)
        assert f[s]["spearman_truth"] == pytest.approx(-m[s]["spearman_truth"])
        assert f[s]["pairwise_acc"] == pytest.approx(1 - m[s]["pairwise_acc"])
        assert f[s]["acc_exact_decile"] < 0.2
    assert F.label_scorer("no.such.column") is None


def test_command_refuses_to_overwrite_an_existing_json(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    out.write_text("{}")
    code = main(["evaluate", "--model", str(tmp_path / "pkg"), "--data", str(tmp_path), "--json", str(out)])
    assert code == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert json.loads(out.read_text()) == {}


def test_command_with_a_missing_data_folder_is_one_line(tmp_path, capsys):
    code = main(["evaluate", "--model", str(tmp_path / "pkg"), "--data", str(tmp_path / "nowhere")])
    err = capsys.readouterr().err
    assert code == 2 and "does not exist" in err and "Traceback" not in err


# ---- end to end: a real (untrained, tiny-input) model package --------------------------------------------

def make_package(root, data_dir, spec):
    """An untrained EfficientNet-Lite0 package at 32 px whose meta records the split, as training writes it."""
    import torch

    from perceptions.data.images import Preprocess
    from perceptions.nets.package import save_package
    from perceptions.nets.perception_net import build_net

    labels = F.load_folder(data_dir, STUDIES).labels
    split = split_from_spec(labels, spec) if "hash" in spec else split_labels(labels, **spec)
    scaling = Scaling.fit(labels[(split == "train").to_numpy()], STUDIES)
    torch.manual_seed(0)
    net, _ = build_net("efficientnet_lite0", STUDIES, weights="none")
    torch.nn.init.normal_(net.head.linear.weight, std=0.05)  # scores that differ between images
    meta = {"data": {"split": spec, "score_column": "trueskill.score", "max_images": None,
                     "counts": {k: int((split == k).sum()) for k in ("train", "val", "test")}}}
    return save_package(root, net, Preprocess(input_size=32), scaling.to_dict(), meta=meta)


def test_evaluate_command_end_to_end(tmp_path, capsys):
    data_dir = tmp_path / "data"
    ids, votes, _ = make_data_folder(data_dir, n_images=30)
    labels = F.load_folder(data_dir, STUDIES).labels
    spec = split_spec(labels, "random", seed=1, val_frac=0.1, test_frac=0.4)
    package = make_package(tmp_path / "model", data_dir, spec)
    out = tmp_path / "out" / "metrics.json"
    rows = tmp_path / "out" / "scored.csv"
    code = main(["evaluate", "--model", str(package), "--data", str(data_dir), "--json", str(out),
                 "--plots", str(tmp_path / "plots"), "--device", "cpu", "--workers", "0", "--no-progress",
                 "--batch-size", "8", "--predictions", str(rows)])
    printed = capsys.readouterr().out
    assert code == 0
    written = json.loads(out.read_text())
    test_ids = set(labels["location_id"][(split_from_spec(labels, spec) == "test").to_numpy()])
    decisive = votes[votes["left"].isin(test_ids) & votes["right"].isin(test_ids) & (votes["choice"] != "equal")]
    scored = pd.read_csv(rows, dtype={"location_id": str})
    assert set(scored["location_id"]) == test_ids and len(scored) == len(test_ids)
    assert {"path", "location_id", "city", *(f"{s}_score" for s in STUDIES),
            *(f"{s}_decile" for s in STUDIES)} <= set(scored.columns)
    assert scored["safe_decile"].between(1, 10).all()
    for s in STUDIES:
        assert written[s]["n"] == len(test_ids) >= 6
        assert written[s]["pairwise_n"] == int((decisive["study"] == s).sum())
        assert 0 <= written[s]["acc_exact_decile"] <= written[s]["acc_within_1_decile"] <= 1
        assert "label_spearman_truth" in written[s] and "label_ceiling" in written[s]
    assert set(written) == {*STUDIES, "mean"}
    assert f"test split: {len(test_ids)} images" in printed and printed.count("\n") > 4
    assert f"test split: {len(test_ids)} images here, {len(test_ids)} when the model was trained" in printed
    assert (tmp_path / "plots" / "decile_confusion.png").is_file()
    # the library call gives the same numbers as the command wrote
    again = E.evaluate_model(package, data_dir, num_workers=0, batch_size=8)
    for s in STUDIES:
        assert np.isfinite(again[s]["spearman"])
        assert again[s]["spearman"] == pytest.approx(written[s]["spearman"])
    # a second run does not overwrite the JSON or the predictions without --overwrite
    assert main(["evaluate", "--model", str(package), "--data", str(data_dir), "--json", str(out)]) == 2
    before = rows.read_bytes()
    assert main(["evaluate", "--model", str(package), "--data", str(data_dir), "--predictions", str(rows)]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err and rows.read_bytes() == before


def test_unreadable_test_images_do_not_raise_a_false_count_note(tmp_path):
    """Training leaves unreadable images out after the split and records the readable count; evaluate must
    see that as the same data, and only a different count as a changed folder."""
    data_dir = tmp_path / "data"
    make_data_folder(data_dir, n_images=30)
    labels = F.load_folder(data_dir, STUDIES).labels
    spec = split_spec(labels, "random", seed=1, val_frac=0.1, test_frac=0.4)
    test_paths = labels["path"][(split_from_spec(labels, spec) == "test").to_numpy()].tolist()
    package = make_package(tmp_path / "model", data_dir, spec)
    meta_file = package / "model.json"
    meta = json.loads(meta_file.read_text())
    meta["data"]["counts"]["test"] -= 1           # as training records it: one test image was unreadable
    meta_file.write_text(json.dumps(meta))
    with open(test_paths[0], "r+b") as f:         # ... and it is unreadable here too
        f.truncate(10)
    result = E.evaluate_model_details(package, data_dir, num_workers=0, batch_size=8, progress=False)
    n = len(test_paths)
    assert len(result.skipped) == 1
    assert f"test split: {n} images here, {n - 1} when the model was trained" in result.notes
    meta["data"]["counts"]["test"] -= 1           # a count that no reading of this folder gives
    meta_file.write_text(json.dumps(meta))
    result = E.evaluate_model_details(package, data_dir, num_workers=0, batch_size=8, progress=False)
    note = next(n for n in result.notes if n.startswith("test split:"))
    assert f"{n - 2} when the model was trained; the folder has changed since" in note


def test_evaluate_on_a_package_with_an_old_split_is_one_line(tmp_path, capsys):
    data_dir = tmp_path / "data"
    make_data_folder(data_dir, n_images=12)
    package = make_package(tmp_path / "model", data_dir, {"method": "random", "seed": 0, "val_frac": 0.1,
                                                          "test_frac": 0.3})
    code = main(["evaluate", "--model", str(package), "--data", str(data_dir), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert "old split" in err and "retrain" in err and "--split all" in err


# ---- done when: train, change the folder, evaluate scores no image the run trained or validated on ------

@pytest.fixture(scope="module")
def trained_run(tiny_city, tmp_path_factory):
    """The cheapest real run on the tiny synthetic city: one head-only epoch at 32 px."""
    from perceptions.train.config import TrainConfig
    from perceptions.train.loop import train

    config = TrainConfig(data=str(tiny_city), out=str(tmp_path_factory.mktemp("runs")), image_size=32,
                         batch_size=8, freeze_epochs=1, epochs=0, loss="both", workers=0, progress=False,
                         device="cpu", seed=3, studies=STUDIES)
    return train(config)


def changed_city(source, target, seed: int = 0, n_new: int = 24):
    """A copy of the city after a user's clean-up: a quarter of the images (and their qscores rows) deleted,
    n_new new images (new location ids, with scores) added, a few renamed. Returns the new location ids."""
    rng = np.random.default_rng(seed)
    shutil.copytree(source, target)
    images = sorted((target / "images").iterdir())
    qscores = read_qscores(target / "qscores.tsv")
    gone = [images[i] for i in rng.choice(len(images), len(images) // 4, replace=False)]
    gone_ids = {p.name.split("_")[2] for p in gone}
    for p in gone:
        p.unlink()
    qscores = qscores[~qscores["location_id"].isin(gone_ids)]
    kept = sorted((target / "images").iterdir())
    for p in kept[:3]:  # renamed: another city name, same location id
        p.rename(p.with_name(p.name.rsplit("_", 1)[0] + "_Renamed.jpg"))
    new_ids, rows = [], []
    for i, src in enumerate(rng.choice(sorted((target / "images").iterdir()), n_new)):
        lat, lon, loc, city = src.name.split("_", 3)
        new_id = f"{0xabc000 + i:024x}"
        shutil.copyfile(src, src.with_name(f"{lat}_{lon}_{new_id}_{city}"))
        rows.append(qscores[qscores["location_id"] == loc].assign(location_id=new_id, _id=""))
        new_ids.append(new_id)
    write_qscores(pd.concat([qscores, *rows], ignore_index=True), target / "qscores.tsv")
    return set(gone_ids), set(new_ids)


def test_evaluate_after_the_folder_changed_scores_only_never_trained_images(trained_run, tmp_path, capsys):
    splits = pd.read_csv(trained_run / "splits.csv", dtype=str)  # written by the training loop
    assert list(splits.columns) == ["location_id", "split"] and splits["location_id"].is_monotonic_increasing
    seen = set(splits["location_id"][splits["split"].isin(["train", "val"])])
    gone, new = changed_city(Path(json.loads((trained_run / "model" / "model.json").read_text())["data"]["path"]),
                             tmp_path / "city")
    out = tmp_path / "P.csv"
    code = main(["evaluate", "--model", str(trained_run / "model"), "--data", str(tmp_path / "city"),
                 "--predictions", str(out), "--device", "cpu", "--workers", "0", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0
    scored = pd.read_csv(out, dtype={"location_id": str})
    assert len(scored) > 0 and not set(scored["location_id"]) & seen   # the done-when check
    assert not set(scored["location_id"]) & gone
    assert set(scored["location_id"]) & new                              # new images by their hash
    test_before = set(splits["location_id"][splits["split"] == "test"])
    assert set(scored["location_id"]) - new == test_before - gone        # every remaining test image, no other
    recorded = json.loads((trained_run / "model" / "model.json").read_text())["data"]["counts"]["test"]
    assert f"test split: {len(scored)} images here, {recorded} when the model was trained" in printed
    # a folder holding none of the model's test images: one line, exit 2
    only_seen = tmp_path / "seen"
    shutil.copytree(tmp_path / "city", only_seen)
    for p in (only_seen / "images").iterdir():
        if p.name.split("_")[2] not in seen:
            p.unlink()
    code = main(["evaluate", "--model", str(trained_run / "model"), "--data", str(only_seen), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "Traceback" not in err
    assert "in the model's test split" in err
