"""The record of a named experiment: the configuration used, the package versions and the git commit.

Every output of an experiment lies under ``results/<experiment>/`` (:func:`results_dir`);
``config.yaml`` there is the validated configuration (defaults filled in), reusable as a ``--configfile``,
headed by comments naming the code that produced the outputs; ``README.md`` lists the folders.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import yaml

#: Packages whose versions can change a result.
PACKAGES = [
    "lossbench",
    "torch",
    "torchvision",
    "numpy",
    "scipy",
    "h5py",
    "scikit-image",
    "lpips",
    "fastmri",
    "snakemake",
]

#: Folder → what it holds, for the experiment's README.
FOLDERS = {
    "summary.md": "one-screen summary: each model's gain over its input, whether each loss wins its own metric",
    "tables/": (
        "the thesis tables (CSV, Markdown, LaTeX), their comparison with the thesis (_vs_paper), per-seed values"
    ),
    "figures/": "the thesis figures, training curves (curves_<task>) and user-study plots (PNG, PDF)",
    "models/<task>/<loss>/seed<N>/": (
        "trained weights (model.pt) and the per-epoch curve (curve.csv, written at every epoch)"
    ),
    "outputs/<task>/<loss>/seed<N>.h5": "each model's outputs on the validation set",
    "outputs/<task>/<loss>/seed<N>_fastmri/": (
        "MRI tasks: the same outputs as fastMRI submission files (one <volume>.h5 per volume, dataset"
        " `reconstruction`), for fastmri.evaluate"
    ),
    "metrics/<task>/<loss>/": "per-image metrics of each model",
    "data/": "the prepared training and validation data",
    "checkpoints/": "training checkpoints: a re-run resumes from them",
    "userstudy/": "user-study analyses and stimuli",
    "logs/": "one log per job; logs/train/<task>/<loss>/seed<N>.log shows a training job's progress",
}


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip()


def provenance(repo: str | Path) -> dict[str, str]:
    """The git commit of ``repo`` (``+ uncommitted changes`` when tracked files differ), Python's and the packages'
    versions."""
    commit = _git(Path(repo), "rev-parse", "HEAD")
    if commit is None:
        commit = "unknown (not a git checkout)"
    elif _git(Path(repo), "status", "--porcelain", "--untracked-files=no"):
        commit += " + uncommitted changes"
    versions = {"python": platform.python_version()}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return {"git commit": commit, **versions}


def record(config: dict[str, Any], origin: dict[str, str]) -> str:
    """``config`` as YAML headed by comment lines for ``origin`` (:func:`provenance`), so the file stays a valid
    configuration."""
    header = [f"# Configuration of experiment {config['experiment']!r}, as validated (defaults filled in)."]
    header += [f"# {key}: {value}" for key, value in origin.items()]
    return "\n".join(header) + "\n" + yaml.safe_dump(config, sort_keys=False, allow_unicode=True)


def readme(config: dict[str, Any]) -> str:
    """Markdown list of what the experiment's folder holds."""
    lines = [
        f"# Experiment `{config['experiment']}`",
        "",
        "The configuration used, with package versions and git commit: `config.yaml`.",
        "",
    ]
    lines += [f"- `{name}`: {what}" for name, what in FOLDERS.items()]
    return "\n".join(lines) + "\n"


def write_if_changed(path: str | Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless it already holds it, so its mtime changes only with its content.

    Returns:
        Whether the file was written.
    """
    path = Path(path)
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return True


def results_dir(config: dict[str, Any]) -> str:
    """Folder of every output of the configured experiment, ``results/<experiment>``."""
    return f"results/{config['experiment']}"
