"""The Snakemake workflow end to end on the tiny test configuration, in a temporary directory."""

import csv
import os
import subprocess
import sys

import pytest
import yaml

from conftest import REPO, TINY_CONFIG

SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]


def _snakemake(workdir, *args, config=TINY_CONFIG, check=True):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [*SNAKEMAKE, "--configfile", str(config), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        env=env,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    _snakemake(workdir, "--cores", "2")
    return workdir


def test_every_table_and_figure_is_made(finished):
    tables = finished / "results" / "demo" / "tables"
    for name in ("table_6_1", "table_6_3", "table_6_4"):
        for suffix in (".csv", ".md", ".tex", "_vs_paper.csv", "_vs_paper.md"):
            assert (tables / f"{name}{suffix}").stat().st_size > 0
    for figure in ("fig_6_1", "fig_6_2", "fig_6_9"):
        assert (finished / "results" / "demo" / "figures" / f"{figure}.png").stat().st_size > 0
        assert (finished / "results" / "demo" / "figures" / f"{figure}.pdf").stat().st_size > 0
    with open(tables / "table_6_1.csv") as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert float(rows["psnr"]["input"]) == pytest.approx(20.17, abs=0.3)
    assert all(rows[metric][loss] for metric in rows for loss in ("input", "l1", "l2", "flip"))
    assert rows["l1"]["msssim"] == ""  # not configured: an empty cell, never a made-up value
    # lpips_trunk: auto fetches the pretrained trunk through the package index, so the label is plain LPIPS.
    assert (
        "| LPIPS ↓ |" in (tables / "table_6_1.md").read_text()
        and "untrained" not in (tables / "table_6_1.md").read_text()
    )
    for name in ("table_6_3", "table_6_4"):
        for suffix in ("_fastmri.csv", "_fastmri.md", "_fastmri.tex"):
            assert (tables / f"{name}{suffix}").stat().st_size > 0
    # fastMRI submission files of every MRI model, one per validation volume.
    for task in ("knee", "brain"):
        assert (
            finished / "results" / "demo" / "outputs" / task / "l1" / "seed0_fastmri" / f"{task}_val_000.h5"
        ).stat().st_size > 0


def test_every_rule_writes_a_log(finished):
    logs = list((finished / "results" / "demo" / "logs").rglob("*.log"))
    kinds = {path.relative_to(finished / "results" / "demo" / "logs").parts[0] for path in logs}
    assert {"data", "train", "infer", "evaluate", "tables", "figures"} <= kinds


def test_second_run_has_nothing_to_do(finished):
    result = _snakemake(finished, "--cores", "2", "--dry-run")
    assert "Nothing to be done" in result.stdout + result.stderr


def test_deleted_table_is_rebuilt_alone(finished):
    (finished / "results" / "demo" / "tables" / "table_6_1.csv").unlink()
    result = _snakemake(finished, "--cores", "2", "--dry-run", "table_6_1")
    out = result.stdout
    assert "table" in out and "train" not in out.split("Job stats")[1].split("Reasons")[0]
    _snakemake(finished, "--cores", "2", "table_6_1")
    assert (finished / "results" / "demo" / "tables" / "table_6_1.csv").is_file()


def test_single_table_plans_only_its_task(tmp_path):
    result = _snakemake(tmp_path, "--cores", "1", "--dry-run", "table_6_3")
    stats = result.stdout.split("Job stats")[1].split("Reasons")[0]
    assert "train" in stats and "embedded_photos" not in stats
    assert "denoise" not in result.stdout and "brain" not in result.stdout


def test_lint_is_clean(tmp_path):
    result = _snakemake(tmp_path, "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Lints for" not in result.stdout + result.stderr


def test_bad_config_fails_before_any_job_naming_the_key(tmp_path):
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["losses"]["l1"]["lr"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = _snakemake(tmp_path, "--cores", "1", config=bad, check=False)
    assert result.returncode != 0
    assert "losses.l1.lr" in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


def test_report_holds_tables_and_figures(finished):
    _snakemake(finished, "--report", "results/demo/report.html")
    html = (finished / "results" / "demo" / "report.html").read_text(errors="replace")
    assert "table_6_1" in html and "fig_6_1" in html


def test_config_overrides_are_typed_and_named_in_errors(tmp_path):
    # Snakemake reads list items of --config as strings; they get a file's YAML types.
    result = _snakemake(tmp_path, "--cores", "1", "--dry-run", "--config", "seeds=[0, 1]")
    stats = result.stdout.split("Job stats")[1].split("Reasons")[0]
    assert any(line.split() == ["train", "18"] for line in stats.splitlines())  # 3 tasks × 3 losses × 2 seeds
    bad = _snakemake(tmp_path, "--cores", "1", "--dry-run", "--config", "trainer={nonfinite: maybe}", check=False)
    assert bad.returncode != 0
    assert (
        f"Configuration error: --config trainer.nonfinite (over {TINY_CONFIG}): trainer.nonfinite: 'maybe' is not one"
        " of ['stop', 'skip']" in bad.stderr
    )
    assert not (tmp_path / "results").exists()
