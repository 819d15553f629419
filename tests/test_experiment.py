"""Named experiments: each one's outputs under results/<experiment>/, untouched by another; its record beside them."""

import shutil
import subprocess

import yaml

from lossbench.pipeline import experiment

from conftest import REPO, TINY_CONFIG, snakemake_command

MODEL = "models/denoise/l1/seed0/model.pt"


def _snakemake(workdir, *args):
    command = snakemake_command(str(TINY_CONFIG), str(workdir), *args)
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _state(folder):
    return {
        path.relative_to(folder): (path.stat().st_mtime_ns, path.read_bytes())
        for path in folder.rglob("*")
        if path.is_file()
    }


def test_two_experiments_keep_apart_and_record_their_configuration(tmp_path):
    _snakemake(tmp_path, f"results/demo/{MODEL}")
    first = tmp_path / "results" / "demo"
    before = _state(first)
    assert (first / MODEL) in {first / path for path in before}
    _snakemake(tmp_path, f"results/other/{MODEL}", "--config", "experiment=other")
    assert _state(first) == before, "the second experiment touched the first one's files"
    assert sorted(path.name for path in (tmp_path / "results").iterdir()) == ["demo", "other"]
    second = tmp_path / "results" / "other"
    assert (second / MODEL).is_file() and (second / "logs" / "train" / "denoise" / "l1" / "seed0.log").is_file()
    text = (second / "config.yaml").read_text()
    assert yaml.safe_load(text)["experiment"] == "other"
    assert "# git commit: " in text and "# torch: " in text
    listing = (second / "README.md").read_text()
    assert (
        "`models/<task>/<loss>/seed<N>/`" in listing
        and "`outputs/<task>/<loss>/seed<N>_fastmri/`: MRI tasks" in listing
    )
    # Nothing changed: the record keeps its mtime, so it never looks newer than the outputs.
    recorded = (second / "config.yaml").stat().st_mtime_ns
    _snakemake(tmp_path, f"results/other/{MODEL}", "--config", "experiment=other", "--forcerun", "train")
    assert (second / "config.yaml").stat().st_mtime_ns == recorded


def test_record_is_a_valid_configuration(tiny_config, tmp_path):
    from lossbench.pipeline.config import validate

    validate(tiny_config)
    path = tmp_path / "config.yaml"
    assert experiment.write_if_changed(path, experiment.record(tiny_config, experiment.provenance(REPO)))
    assert not experiment.write_if_changed(path, path.read_text())
    assert validate(yaml.safe_load(path.read_text())) == tiny_config
    assert not list(tmp_path.glob("*.tmp"))


def test_provenance_outside_a_git_checkout(tmp_path):
    origin = experiment.provenance(tmp_path)
    assert origin["git commit"] == "unknown (not a git checkout)" and origin["python"].count(".") == 2


def test_make_clean_results_deletes_one_experiment_after_asking(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path)
    shutil.copy(REPO / "config.yaml", tmp_path)
    for name in ("demo", "other"):
        (tmp_path / "results" / name).mkdir(parents=True)
        (tmp_path / "results" / name / "summary.md").write_text(name)

    def make(*args, answer=""):
        return subprocess.run(
            ["make", "-s", "-C", str(tmp_path), "clean-results", *args], input=answer, capture_output=True, text=True
        )

    kept = make(answer="n\n")
    assert kept.returncode != 0 and "Delete results/demo/" in kept.stdout and (tmp_path / "results" / "demo").is_dir()
    assert make(answer="y\n").returncode == 0  # config.yaml's experiment, demo
    assert not (tmp_path / "results" / "demo").exists() and (tmp_path / "results" / "other" / "summary.md").is_file()
    assert make("EXPERIMENT=other", "CONFIRM=yes").returncode == 0 and not (tmp_path / "results" / "other").exists()
    bad = make("EXPERIMENT=../x", "CONFIRM=yes")
    assert bad.returncode != 0 and "EXPERIMENT='../x' is not an experiment name" in bad.stderr
    missing = make("EXPERIMENT=nope", "CONFIRM=yes")
    assert missing.returncode != 0 and "results/nope/ does not exist" in missing.stderr
