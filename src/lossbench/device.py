"""Device selection: a free GPU from the lock-file pool when present, CPU otherwise, with a warning."""

from __future__ import annotations

import logging
import os

import torch

from lossbench import gpu_pool

log = logging.getLogger(__name__)


def select_device(requested: str = "auto") -> torch.device:
    """Resolve ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) to an available device.

    ``auto`` and ``cuda`` take a GPU from :mod:`lossbench.gpu_pool`, held until the process exits, so
    parallel jobs land on different GPUs; ``cuda:N`` uses that device as asked. Without CUDA they
    fall back to the CPU with a logged warning, so the same configuration runs on a laptop and a
    GPU node.
    """
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        log.warning("no CUDA device available (CUDA_VISIBLE_DEVICES=%s): running on the CPU", os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
        return torch.device("cpu")
    if requested.startswith("cuda:"):
        return torch.device(requested)
    return torch.device("cuda", gpu_pool.acquire(torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")))


def make_deterministic(seed: int, threads: int | None = None) -> None:
    """Seed torch and request deterministic kernels, so that a CPU run is reproducible bit for bit."""
    # cuBLAS needs a fixed workspace to be deterministic; it must be set before CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
