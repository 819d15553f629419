import csv

import numpy as np
import pytest

from lossbench.core.io import write_metrics
from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.data.tasks import write_valset
from lossbench.data.valset import ImageFile, write_images
from lossbench.evaluate import evaluate, fastmri_volume_metrics, metric_params
from lossbench.report.table_files import to_markdown, write_all
from lossbench.report.tables import build_table

MASK = {"mask": {"center_fraction": 0.04, "acceleration": 8}, "crop": 320}


@pytest.fixture(scope="module")
def knee_valset(tmp_path_factory):
    root = tmp_path_factory.mktemp("knee")
    generate_dataset(root / "files", "singlecoil", n_volumes=2, n_slices=2, seed=3, prefix="knee_val")
    write_valset("mri_singlecoil", MASK, root / "files", root / "val.h5")
    return root / "val.h5"


def _copy_targets_as_outputs(valset_path, out_path, noise=0.0):
    rng = np.random.default_rng(0)
    with ImageFile(valset_path) as val:
        items = [(i, t + noise * rng.standard_normal(t.shape).astype(np.float32)) for i, t in val.items("target")]
    write_images(out_path, {"output": items})


def test_mri_inputs_are_evaluated_per_slice_with_grayscale_flip(knee_valset):
    rows = evaluate(knee_valset, None, ["l1", "psnr", "flip"], {"flip_gray_mode": "gray_thesis"})
    assert [row["image"] for row in rows] == [
        "knee_val_000_s000",
        "knee_val_000_s001",
        "knee_val_001_s000",
        "knee_val_001_s001",
    ]
    assert all(row["l1"] > 0 and 5 < row["psnr"] < 50 and 0 < row["flip"] < 1 for row in rows)


def test_perfect_outputs_score_perfectly(knee_valset, tmp_path):
    _copy_targets_as_outputs(knee_valset, tmp_path / "out.h5")
    rows = evaluate(knee_valset, tmp_path / "out.h5", ["l1", "l2", "flip"])
    assert all(row["l1"] == 0 and row["l2"] == 0 and row["flip"] == 0 for row in rows)
    volumes = fastmri_volume_metrics(knee_valset, tmp_path / "out.h5")
    assert [v["volume"] for v in volumes] == ["knee_val_000", "knee_val_001"]
    assert all(v["nmse"] == 0 and v["ssim"] == pytest.approx(1.0) for v in volumes)


def test_fastmri_metrics_rank_the_masked_input_below_a_near_perfect_output(knee_valset, tmp_path):
    _copy_targets_as_outputs(knee_valset, tmp_path / "out.h5", noise=0.01)
    masked = fastmri_volume_metrics(knee_valset, None)
    restored = fastmri_volume_metrics(knee_valset, tmp_path / "out.h5")
    for before, after in zip(masked, restored):
        assert after["nmse"] < before["nmse"] and after["psnr"] > before["psnr"] and after["ssim"] > before["ssim"]


def test_fastmri_table(knee_valset, tmp_path):
    _copy_targets_as_outputs(knee_valset, tmp_path / "out.h5", noise=0.01)
    write_metrics(tmp_path / "input.csv", fastmri_volume_metrics(knee_valset, None))
    write_metrics(tmp_path / "l1.csv", fastmri_volume_metrics(knee_valset, tmp_path / "out.h5"))
    table = build_table("table_6_3", tmp_path / "input.csv", {"l1": [tmp_path / "l1.csv"]}, suite="fastmri")
    assert list(table.cells) == ["nmse", "psnr", "ssim"]
    assert "| NMSE ↓ |" in to_markdown(table) and "| Masked |" in to_markdown(table)
    paths = write_all(table, tmp_path / "table_6_3_fastmri", with_paper=False)
    assert [p.name for p in paths] == ["table_6_3_fastmri.csv", "table_6_3_fastmri.md", "table_6_3_fastmri.tex"]
    with open(paths[0]) as handle:
        assert [row["metric"] for row in csv.DictReader(handle)] == ["nmse", "psnr", "ssim"]


def test_mismatched_outputs_are_rejected(knee_valset, tmp_path):
    write_images(tmp_path / "out.h5", {"output": [("other", np.zeros((1, 4, 4), np.float32))]})
    with pytest.raises(ValueError, match="image ids differ"):
        evaluate(knee_valset, tmp_path / "out.h5", ["l1"])


def test_metric_params_choose_flip_mode_and_lpips_trunk():
    assert metric_params("flip", "rgb_denoise") == {"ppd": pytest.approx(67.0206, abs=1e-4)}
    assert metric_params("flip", "mri_singlecoil", {"flip_gray_mode": "gray_replicated"}) == {
        "mode": "gray_replicated",
        "ppd": pytest.approx(67.0206, abs=1e-4),
    }
    assert metric_params(
        "flip", "rgb_denoise", {"flip": {"distance_m": 0.35, "monitor_width_m": 0.7, "monitor_pixels": 3840}}
    )["ppd"] == pytest.approx(33.5103, abs=1e-4)
    assert metric_params("flip", "rgb_denoise", {"flip": {"ppd": 30.0}}) == {"ppd": 30.0}
    assert metric_params("lpips", "rgb_denoise", {"lpips_trunk": "untrained", "lpips_weights": None}) == {
        "trunk": "untrained",
        "weights_path": None,
    }
