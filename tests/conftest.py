"""Shared fixtures: the repository root, a tiny valid configuration, and small synthetic data; the command line the
workflow tests run Snakemake with; centre crops of the bundled photographs and MRI head slice the metric tests use."""

from __future__ import annotations

import copy
import sys
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
import yaml

from lossbench.data.fastmri_synthetic import brain_image

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "config_tiny.yaml"


def photo(name: str, height: int, width: int, gray: bool = False) -> torch.Tensor:
    """Centre crop of a scikit-image photograph, (1, C, H, W) float64 in [0, 1] (C = 1 for a grayscale one)."""
    image = torch.from_numpy(np.atleast_3d(getattr(skimage.data, name)())).permute(2, 0, 1).double() / 255
    top, left = (image.shape[1] - height) // 2, (image.shape[2] - width) // 2
    image = image[None, :, top : top + height, left : left + width]
    return image.mean(1, keepdim=True) if gray else image


def head(height: int, width: int) -> torch.Tensor:
    """Centre crop of matplotlib's MRI head slice (dark background, as MRI slices), (1, 1, H, W) float64 in [0, 1]."""
    image = torch.from_numpy(np.array(brain_image()))
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[None, None, top : top + height, left : left + width].double()


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
