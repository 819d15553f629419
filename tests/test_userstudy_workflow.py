"""The user study in the workflow: the thesis's tables and figures, our stimuli, and our study's analysis."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import yaml

from lossbench.data.valset import write_images
from lossbench.userstudy.server import Study

from conftest import TINY_CONFIG
from test_workflow import _snakemake

THESIS_TARGETS = ["table_6_2", "table_6_5", "fig_6_7", "fig_6_8", "fig_6_17", "fig_6_18"]
OWN_TARGETS = [
    f"userstudy_ours_{study}{suffix}" for study in ("denoise", "mri") for suffix in ("", "_jod", "_triangle")
]
#: Every user-study rule of this configuration; the models' outputs exist already and are not rebuilt.
USERSTUDY_RULES = [
    "userstudy_analysis_thesis_denoise",
    "userstudy_analysis_thesis_mri",
    "userstudy_analysis_ours_denoise",
    "userstudy_analysis_ours_mri",
    "userstudy_kendall_thesis",
    "userstudy_kendall_ours",
    "userstudy_self_preference_thesis",
    "userstudy_self_preference_ours",
    "userstudy_stimuli",
    "userstudy_counts",
    "userstudy_ours_studies",
    "userstudy_screening",
    "userstudy",
    *THESIS_TARGETS,
    *OWN_TARGETS,
]
LOSSES = ("l1", "l2", "flip")
#: The MRI images of our study: two knee and two brain slices, one study as the thesis's.
MRI_IMAGES = {"knee": ["knee_a", "knee_b"], "brain": ["brain_a", "brain_b"]}
#: Observers of our studies: enough to resample for denoising, too few for MRI.
OBSERVERS = {"denoise": ["ann", "ben", "cat", "dot", "eve"], "mri": ["ann", "ben", "cat"]}


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """A workdir whose validation set and model outputs exist (as if trained), and a config with our own study."""
    workdir = tmp_path_factory.mktemp("userstudy")
    rng = np.random.default_rng(0)
    target = rng.random((3, 20, 30)).astype(np.float32)
    write_images(
        workdir / "results/demo/data/denoise/val.h5",
        {"input": [("astronaut", target)], "target": [("astronaut", target)]},
    )
    for loss in LOSSES:
        write_images(
            workdir / f"results/demo/outputs/denoise/{loss}/seed0.h5",
            {"output": [("astronaut", np.clip(target + rng.normal(0, 0.05, target.shape), 0, 1))]},
        )
    for task, images in MRI_IMAGES.items():
        slices = [(image, rng.random((1, 16, 12)).astype(np.float32)) for image in images]
        write_images(workdir / f"results/demo/data/{task}/val.h5", {"input": slices, "target": slices})
        for loss in LOSSES:
            write_images(
                workdir / f"results/demo/outputs/{task}/{loss}/seed0.h5",
                {
                    "output": [
                        (image, np.clip(pixels + rng.normal(0, 0.05, pixels.shape), 0, 1)) for image, pixels in slices
                    ]
                },
            )
    # Our measured Tables 6.1, 6.3 and 6.4 (only what the Kendall τ needs: metric rows, loss columns).
    (workdir / "results/demo/tables").mkdir(parents=True)
    for table, psnr in (
        ("table_6_1", ["29.0", "30.0", "28.0"]),
        ("table_6_3", ["31.0", "32.0", "30.0"]),
        ("table_6_4", ["33.0", "34.0", "35.0"]),
    ):
        with open(workdir / f"results/demo/tables/{table}.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["metric", "label", "input", "l1", "l2", "msssim", "lpips_l2", "flip", "adaptive", "best"])
            writer.writerow(["psnr", "PSNR", "20.1", psnr[0], psnr[1], "", "", psnr[2], "", "l2"])
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["userstudy"] = {
        "bootstrap_samples": 100,
        "stimuli": {"denoise": ["astronaut"], **MRI_IMAGES},
        "responses": str(workdir / "responses"),
    }
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return workdir


@pytest.fixture(scope="module")
def built(study_dir):
    """Stimuli by the pipeline, the observers' answers through the app's logic, then every user-study target."""
    config = study_dir / "config.yaml"
    manifests = {
        study: study_dir / f"results/demo/userstudy/stimuli/{study}/manifest.json" for study in ("denoise", "mri")
    }
    _snakemake(
        study_dir,
        "--cores",
        "1",
        *(str(path.relative_to(study_dir)) for path in manifests.values()),
        "--allowed-rules",
        "userstudy_stimuli",
        config=config,
    )
    for name, manifest in manifests.items():
        study = Study(manifest.parent, study_dir / "responses" / name, OBSERVERS[name])
        for observer in study.plans:
            for trial in study.plans[observer]:
                # Everyone prefers l2, else the left option.
                assert study.answer(observer, trial.id, "right" if trial.right == "l2" else "left")[0] == 200
    with open(study_dir / "responses/denoise/ann.jsonl", "ab") as handle:
        handle.write(b"42\n")  # valid JSON, but no answer: counted and named, never a traceback (issue 27)
    _snakemake(
        study_dir, "--cores", "2", "userstudy", *THESIS_TARGETS, "--allowed-rules", *USERSTUDY_RULES, config=config
    )
    return study_dir


def test_thesis_targets_are_regenerated_from_the_shipped_data(built):
    tables, figures = built / "results/demo/tables", built / "results/demo/figures"
    with open(tables / "table_6_2.csv") as handle:
        assert float(next(row for row in csv.DictReader(handle) if row["loser"] == "l2")["l1"]) == 0.6786
    assert "**0.7768**" in (tables / "table_6_2.md").read_text()
    with open(tables / "table_6_5_jod.csv") as handle:
        ranks = {row["condition"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert ranks["msssim"] == 1
    # The thesis's figures and our JOD tables put the lowest-scoring loss at 1 (Figs. 6.7, 6.17).
    with open(tables / "table_6_2_jod.csv") as handle:
        jod = {row["condition"]: float(row["jod"]) for row in csv.DictReader(handle)}
    assert jod["l2"] == min(jod.values()) == 1.0 and jod["lpips_l2"] == pytest.approx(1.0 + 0.701 + 0.628, abs=2e-3)
    assert "lowest-scoring loss, l2, at 1" in (tables / "table_6_2_jod.md").read_text()
    # The thesis publishes pooled counts: its observers are stated, and its intervals resample trials.
    for table, observers in (("table_6_2", 14), ("table_6_5", 12)):
        assert (
            f"{observers} observers; 95 % intervals and p-values resample each pair's trials"
            in (tables / f"{table}_jod.md").read_text()
        )
    for figure in ("fig_6_7", "fig_6_8", "fig_6_17", "fig_6_18"):
        assert (figures / f"{figure}.png").stat().st_size > 0 and (figures / f"{figure}.pdf").stat().st_size > 0
    assert "LPIPS" in (tables / "userstudy_kendall_thesis.md").read_text()
    # Self-preference on the thesis's data: every own metric of every task it showed, with its interval.
    with open(tables / "userstudy_self_preference_thesis.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 5 and all(float(row["ci_low"]) <= float(row["ci_high"]) for row in rows)
    assert (figures / "userstudy_self_preference_thesis.png").stat().st_size > 0


def test_our_study_from_stimuli_to_analysis(built):
    tables = built / "results/demo/tables"
    with open(tables / "userstudy_ours_denoise_jod.csv") as handle:
        ranks = {row["condition"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert ranks["l2"] == 1
    with open(tables / "userstudy_kendall_ours_denoise.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Our PSNR ranks l2 > l1 > flip; the observers put l2 first as well.
    assert [row["metric"] for row in rows] == ["psnr"] and float(rows[0]["tau"]) > 0
    # PSNR is no loss's own metric: the self-preference table says there is nothing to measure.
    assert "nothing to measure" in (tables / "userstudy_self_preference_ours_denoise.md").read_text()
    assert (built / "results/demo/figures/userstudy_ours_denoise_triangle.pdf").stat().st_size > 0
    # The line that is no answer: in the counts' log, in skipped_lines.csv and in the JOD table's caption.
    note = "Answer files: 1 line skipped (ann.jsonl: 1 not an object)."
    assert note in (built / "results/demo/logs/userstudy/counts_denoise.log").read_text()
    assert (
        built / "results/demo/userstudy/ours_denoise/skipped_lines.csv"
    ).read_text() == "file,observer,reason,lines,line_numbers\nann.jsonl,ann,not an object,1,4\n"
    assert (
        note in (tables / "userstudy_ours_denoise_jod.md").read_text()
        and note in (built / "results/demo/logs/userstudy/ours_denoise.log").read_text()
    )
    assert "Answer files: no line skipped." in (tables / "userstudy_ours_mri_jod.md").read_text()
    # A new observer's answers rerun the analysis of our study, and nothing else.
    manifest = built / "results/demo/userstudy/stimuli/denoise/manifest.json"
    late = Study(manifest.parent, built / "responses/denoise", ["dan"])
    assert late.answer("dan", late.plans["dan"][0].id, "left")[0] == 200
    dry = _snakemake(built, "--cores", "1", "--dry-run", "userstudy", *THESIS_TARGETS, config=built / "config.yaml")
    jobs = {line.split()[0] for line in dry.stdout.split("Job stats:")[1].split("\n\n")[0].splitlines()[3:]}
    assert jobs == {
        "userstudy_counts",
        "userstudy_analysis_ours_denoise",
        "userstudy_kendall_ours",
        "userstudy_self_preference_ours",
        "userstudy_ours_studies",
        "userstudy_screening",
        "userstudy",
        "total",
    }


def test_our_studies_screen_their_observers_and_keep_everyone_in_the_result(built):
    tables = built / "results/demo/tables"
    with open(tables / "userstudy_ours_denoise_screening.csv") as handle:
        rows = list(csv.DictReader(handle))
    # Five observers who answer alike: each one's answers fit the others' scale, nobody is flagged.
    assert [row["observer"] for row in rows] == OBSERVERS["denoise"] and {row["flagged"] for row in rows} == {"no"}
    assert "No observer is flagged." in (tables / "userstudy_ours_denoise_screening.md").read_text()
    with open(tables / "userstudy_ours_denoise_jod.csv") as handle:
        everyone = [(row["condition"], row["jod"]) for row in csv.DictReader(handle)]
    with open(tables / "userstudy_ours_denoise_jod_without_flagged.csv") as handle:
        assert [(row["condition"], row["jod"]) for row in csv.DictReader(handle)] == everyone
    caption = (tables / "userstudy_ours_denoise_jod_without_flagged.md").read_text()
    assert "of all observers (none flagged, or too few to screen)" in caption
    with open(tables / "userstudy_ours_mri_screening.csv") as handle:
        assert [row["observer"] for row in csv.DictReader(handle)] == OBSERVERS["mri"]


def test_our_studies_state_their_observers_and_give_intervals_only_from_five(built):
    tables, analyses = built / "results/demo/tables", built / "results/demo/userstudy"
    with open(tables / "userstudy_ours_denoise_jod.csv") as handle:
        assert {(row["observers"], row["resampled"], bool(row["ci_low"])) for row in csv.DictReader(handle)} == {
            ("5", "observers", True)
        }
    assert (
        "5 observers; 95 % intervals and p-values resample the observers"
        in (tables / "userstudy_ours_denoise_jod.md").read_text()
    )
    # Three MRI observers: scores, but no interval and no p-value anywhere, and every output says why.
    warning = (
        "3 observers: fewer than the 5 that resampling needs (10 distinct resamples), so no confidence intervals and no"
        " significance tests"
    )
    with open(tables / "userstudy_ours_mri_jod.csv") as handle:
        assert {
            (row["observers"], row["resampled"], row["ci_low"], row["ci_high"]) for row in csv.DictReader(handle)
        } == {("3", "none", "", "")}
    assert warning + "." in (tables / "userstudy_ours_mri_jod.md").read_text()
    assert warning in (built / "results/demo/logs/userstudy/ours_mri.log").read_text()
    with open(analyses / "ours_mri/p_values.csv") as handle:
        assert all(cell == "" for row in list(csv.reader(handle))[1:] for cell in row)
    with open(tables / "userstudy_kendall_ours_mri.csv") as handle:
        assert {(row["ci_low"], row["ci_high"]) for row in csv.DictReader(handle)} == {("", "")}
    assert warning in (tables / "userstudy_kendall_ours_mri.md").read_text()


def test_one_mri_study_of_knee_and_brain_images(built):
    manifest = json.loads((built / "results/demo/userstudy/stimuli/mri/manifest.json").read_text())
    assert manifest["study"] == "mri" and manifest["tasks"] == ["knee", "brain"]
    assert {image: entry["task"] for image, entry in manifest["images"].items()} == {
        image: task for task, images in MRI_IMAGES.items() for image in images
    }
    # Every image × every pair of losses: 4 × 3 here; with the thesis's six losses 4 × 15 = 60.
    assert len(manifest["trials"]) == 4 * 3
    with open(built / "results/demo/userstudy/ours_mri/observer_counts.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 3 * len(LOSSES)
    with open(built / "results/demo/tables/userstudy_ours_mri_jod.csv") as handle:
        ranks = {row["condition"]: int(row["rank"]) for row in csv.DictReader(handle)}
    assert ranks["l2"] == 1
    # The study's τ uses our metric table of each task it showed.
    with open(built / "results/demo/tables/userstudy_kendall_ours_mri.csv") as handle:
        assert [row["source"] for row in csv.DictReader(handle)] == ["ours: table_6_3.csv", "ours: table_6_4.csv"]


def test_studies_per_task_are_an_option(built, tmp_path):
    config = yaml.safe_load((built / "config.yaml").read_text())
    config["userstudy"]["studies"] = {"denoise": ["denoise"], "knee": ["knee"], "brain": ["brain"]}
    config["userstudy"]["responses"] = None
    (tmp_path / "per_task.yaml").write_text(yaml.safe_dump(config))
    dry = _snakemake(built, "--cores", "1", "--dry-run", "--forceall", "userstudy", config=tmp_path / "per_task.yaml")
    for study in ("denoise", "knee", "brain"):
        assert f"results/demo/userstudy/stimuli/{study}/manifest.json" in dry.stdout
    assert "stimuli/mri" not in dry.stdout
    config["userstudy"]["studies"] = {"mri": ["knee", "brain"]}
    del config["userstudy"]["stimuli"]["brain"]
    (tmp_path / "partial.yaml").write_text(yaml.safe_dump(config))
    failed = _snakemake(built, "--cores", "1", "--dry-run", "userstudy", config=tmp_path / "partial.yaml", check=False)
    assert (
        failed.returncode != 0
        and "userstudy.studies.mri: task brain has no images under userstudy.stimuli" in failed.stderr + failed.stdout
    )


def test_a_study_without_answers_is_named_not_failed(built, tmp_path):
    """Answers for denoising only (issue 26: the MRI study's jobs failed): the MRI study is named, nothing fails."""
    workdir = shutil.copytree(built, tmp_path / "copy", symlinks=True)
    shutil.rmtree(workdir / "responses/mri")
    config = yaml.safe_load((built / "config.yaml").read_text())
    config["userstudy"]["responses"] = str(workdir / "responses")
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    done = _snakemake(
        workdir, "--cores", "2", "userstudy", "--allowed-rules", *USERSTUDY_RULES, config=workdir / "config.yaml"
    )
    note = f"Note: userstudy: not analysing mri (no answers in {workdir / 'responses/mri'})"
    # The denoising study is counted and analysed again (its answers moved); no job of the MRI study is planned.
    assert note in done.stderr and "rule userstudy_analysis_ours_denoise:" in done.stderr
    assert "rule userstudy_analysis_ours_mri:" not in done.stderr and "study=mri" not in done.stderr
    with open(workdir / "results/demo/tables/userstudy_ours_studies.csv") as handle:
        rows = {row["study"]: row for row in csv.DictReader(handle)}
    assert rows["denoise"]["answer_files"] == "6" and rows["denoise"]["status"].startswith("analysed")
    assert (
        rows["mri"]["answer_files"] == "0"
        and rows["mri"]["status"] == f"not analysed: no answers (no <observer>.jsonl in {workdir / 'responses/mri'})"
    )
    assert "| mri | knee + brain |" in (workdir / "results/demo/tables/userstudy_ours_studies.md").read_text()
    assert "mri: 0 answer files" in (workdir / "results/demo/logs/userstudy/ours_studies.log").read_text()
