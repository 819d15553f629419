"""Device selection: CUDA when present, CPU otherwise, with a warning rather than a failure."""

from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger(__name__)


def select_device(requested: str = "auto") -> torch.device:
    """Resolve ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) to an available device.

    ``auto`` and an unavailable ``cuda`` fall back to the CPU with a logged warning, so the same
    configuration runs on a laptop and a GPU node.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda" if requested == "auto" else requested)
    log.warning("no CUDA device available (CUDA_VISIBLE_DEVICES=%s): running on the CPU", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
    return torch.device("cpu")


def make_deterministic(seed: int, threads: int | None = None) -> None:
    """Seed torch and request deterministic kernels, so that a CPU run is reproducible bit for bit."""
    # cuBLAS needs a fixed workspace to be deterministic; it must be set before CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
