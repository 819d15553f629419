"""Shared fixtures: the repository root, a tiny valid configuration, and small synthetic data; the command line the
workflow tests run Snakemake with."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "config_tiny.yaml"


def snakemake_command(
    config: str | Path, directory: str | Path, *args: object, cores: int = 1, snakefile: Path = REPO / "Snakefile"
) -> list[str]:
    """``python -m snakemake`` on ``snakefile`` with the configuration file ``config``, in ``directory``, on
    ``cores``, then ``args`` (targets and options)."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--configfile",
        str(config),
        "--directory",
        str(directory),
        "--cores",
        str(cores),
        *map(str, args),
    ]


@pytest.fixture(autouse=True)
def _single_thread():
    # Tests share two cores; one thread each keeps them fast and their results reproducible.
    torch.set_num_threads(1)


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def tiny_config() -> dict:
    """A fresh copy of the smallest valid configuration (tests/data/config_tiny.yaml)."""
    with open(TINY_CONFIG) as handle:
        return copy.deepcopy(yaml.safe_load(handle))
