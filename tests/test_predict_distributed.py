"""`predict` under torchrun (gloo, 2 CPU processes): each image exactly once, the same table as one process
(to the last written digit), and a killed job resumes to it."""
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch.multiprocessing as mp

from perceptions.predict.job import predict_to_file
from predict_helpers import build_tiny_package, distributed_predict, write_pictures

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    package = build_tiny_package(root / "model")
    images = write_pictures(root / "images", 50, size=(40, 30))
    reference = root / "one_process.csv"
    predict_to_file([root / "images"], reference, model=package, batch_size=4, device="cpu", num_workers=0,
                    precision="fp32", progress=False)
    return root, package, images, reference


def test_two_processes_killed_then_resumed_with_torchrun_write_each_image_once(job, tmp_path):
    """One job, two launches (each costs a few seconds of imports per process): a 2-process run killed
    half-way, then `torchrun --nproc_per_node 2 ... --resume`; the table equals the 1-process run's."""
    root, package, images, reference = job
    out = tmp_path / "job" / "two.csv"
    with pytest.raises(mp.ProcessExitedException):
        mp.spawn(distributed_predict, args=(2, str(tmp_path / "store1"), [str(root / "images")], str(out),
                                            str(package), False, 4), nprocs=2, join=True)
    parts = sorted(p for p in out.parent.glob("two.csv.part-*.csv") if not p.name.endswith(".skipped.csv"))
    done = sum(len(pd.read_csv(p)) for p in parts)
    assert not out.exists() and 0 < done <= 24  # each rank lost at most the batch it was on

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "perceptions", "predict", str(root / "images"), "--model", str(package), "--out", str(out),
           "--device", "cpu", "--workers", "0", "--precision", "fp32", "--batch-size", "4", "--no-progress",
           "--resume"]
    finished = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "over 2 processes" in finished.stdout and f"{done} from the earlier run" in finished.stdout
    assert f"{50 - done} scored now" in finished.stdout  # counted over both processes
    table = pd.read_csv(out)
    assert len(table) == 50 and table["path"].is_unique and sorted(table["path"]) == sorted(images)
    # Same rows in the same order; scores agree to the 4 written decimals give or take one unit: the ranks run
    # with other thread counts than the reference, so float sums may round the last written digit differently.
    ref = pd.read_csv(reference)
    assert list(table.columns) == list(ref.columns) and list(table["path"]) == list(ref["path"])
    scores = [c for c in ref.columns if c.endswith("_score")]
    assert (table[scores] - ref[scores]).abs().max().max() <= 2e-4
    other = [c for c in ref.columns if c not in scores and not c.endswith("_decile")]
    pd.testing.assert_frame_equal(table[other], ref[other])
    assert (table.filter(like="_decile") != ref.filter(like="_decile")).to_numpy().sum() <= 1
    assert sorted(p.name for p in out.parent.iterdir()) == ["two.csv"]  # parts merged and removed
