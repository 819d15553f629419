"""Shared fixtures: the repository root, a tiny valid configuration, and small synthetic data."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "data" / "config_tiny.yaml"


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
