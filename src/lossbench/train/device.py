"""Device selection: a free GPU from the lock-file pool when present, CPU otherwise, with a warning.

Also the GPU feature check of the trainer's options, the CUDA kernel settings of a training run
(TF32, cuDNN autotuning, determinism). The losses' full-float32 scope is :mod:`lossbench.core.precision`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import platform
import re
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lossbench.core.precision import float32_precision_flags
from lossbench.train import gpu_pool

log = logging.getLogger(__name__)

_REQUEST = re.compile(r"auto|cpu|cuda(:\d+)?")
#: Where the NVIDIA kernel module states its version (absent without a driver).
DRIVER_VERSION_FILE = Path("/proc/driver/nvidia/version")
#: bfloat16 tensor cores and the Triton kernels of torch.compile need Ampere (sm80) or newer.
MIN_CAPABILITY = (8, 0)


def resolve_layout(trainer: Mapping[str, Any], device: str) -> dict[str, Any]:
    """``trainer`` with ``channels_last: auto`` resolved for ``device`` (``device`` of the configuration; ``auto``
    is the GPU when this machine has one).

    On the CPU: NHWC (oneDNN's convolutions are 1.1-1.5x faster there, gradients within 1e-5 of NCHW). On a GPU:
    NCHW, as nothing there has been measured yet. bfloat16 autocast is never chosen for the user: in 3 seeds of
    every demo training it moved two own metrics beyond the float32 seeds' range (docs/performance.md). The
    resolved value goes into the run settings, so that a run made another way is another run.
    """
    resolved = dict(trainer)
    if resolved["channels_last"] == "auto":
        resolved["channels_last"] = device == "cpu" or (device == "auto" and not torch.cuda.is_available())
    return resolved


class DeviceError(RuntimeError):
    """The requested device or a GPU feature is unavailable; the message is one line."""


def driver_description(version_file: Path = DRIVER_VERSION_FILE, smi: str = "nvidia-smi") -> str:
    """The NVIDIA driver's version and the newest CUDA it supports, as far as the machine tells.

    Read from ``nvidia-smi``'s header (driver and CUDA version) or, without it, from the kernel
    module's ``version_file``; ``"no NVIDIA driver found"`` when neither exists.
    """
    try:
        header = subprocess.run([smi], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        header = ""
    driver = re.search(r"Driver Version:\s*(\S+)", header)
    cuda = re.search(r"CUDA Version:\s*(\S+)", header)
    if driver:
        return f"NVIDIA driver {driver.group(1)}" + (f" (supports CUDA up to {cuda.group(1)})" if cuda else "")
    try:
        module = re.search(r"Kernel Module\s+(?:for \S+\s+)?(\d+(?:\.\d+)+)", version_file.read_text())
    except OSError:
        module = None
    return f"NVIDIA driver {module.group(1)}" if module else "no NVIDIA driver found"


def cuda_diagnosis() -> str:
    """One line on why CUDA may be unusable: the wheel's CUDA version, the driver, the visible devices."""
    wheel = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return (
        f"torch {torch.__version__} is {wheel}, {driver_description()},"
        f" CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}"
    )


def visible_gpu_uuids() -> list[str]:
    """UUIDs of the visible CUDA devices in index order: the same GPU has the same UUID in every job,
    whatever ``CUDA_VISIBLE_DEVICES`` called it (an index, a renumbered index or a UUID)."""
    return [str(torch.cuda.get_device_properties(index).uuid) for index in range(torch.cuda.device_count())]


def select_device(requested: str = "auto", lock_dir: str | Path | None = None) -> torch.device:
    """Resolve ``requested`` (``auto``, ``cpu``, ``cuda`` or ``cuda:N``) to an available device.

    ``auto`` and ``cuda`` take a GPU from :mod:`lossbench.train.gpu_pool` (locks named by GPU UUID),
    held until the process exits, so parallel jobs land on different GPUs; ``cuda:N`` uses that
    device as asked. The chosen GPU becomes the current device, so that library calls and
    autocast's checks open their CUDA context on it rather than on GPU 0. Without CUDA, ``auto``
    falls back to the CPU with a logged warning, so the same configuration runs on a laptop and a
    GPU node; an explicit ``cuda`` raises instead of running a long job on the CPU.

    Args:
        requested: The configured device.
        lock_dir: Folder of the GPU lock files (default :func:`gpu_pool.default_lock_dir`).

    Raises:
        DeviceError: ``cuda`` or ``cuda:N`` without a usable CUDA device (naming the wheel's CUDA
            version and the driver), ``cuda:N`` beyond the visible devices, or an unknown name.
    """
    if not _REQUEST.fullmatch(requested):
        raise DeviceError(f"device: expected auto, cpu, cuda or cuda:N, got {requested!r}")
    if requested == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        if requested == "auto":
            log.warning("no CUDA device available (%s): running on the CPU", cuda_diagnosis())
            return torch.device("cpu")
        raise DeviceError(
            f"device: {requested} is configured but CUDA is unavailable ({cuda_diagnosis()}); a driver older than the"
            " wheel's CUDA needs a torch wheel for an older CUDA (e.g. --index-url"
            " https://download.pytorch.org/whl/cu126), or set device: auto to allow the CPU"
        )
    if requested.startswith("cuda:"):
        device = torch.device(requested)
        if device.index >= torch.cuda.device_count():
            raise DeviceError(
                f"device: {requested} is configured but {torch.cuda.device_count()} CUDA device(s) are visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
            )
    else:
        device = torch.device("cuda", gpu_pool.acquire(visible_gpu_uuids(), lock_dir))
    torch.cuda.set_device(device)
    return device


def check_gpu_features(device: torch.device, autocast: str, compile: bool) -> None:
    """Refuse bfloat16 autocast and ``torch.compile`` on GPUs older than compute capability 8.0.

    Before Ampere, bfloat16 has no tensor-core support (cuDNN falls back slowly or fails) and
    torch.compile's Triton kernels do not build (V100 is sm70, T4 sm75). The CPU accepts both.

    Args:
        device: The training device (:func:`select_device`).
        autocast: ``trainer.autocast`` (``none`` or ``bfloat16``).
        compile: ``trainer.compile``.

    Raises:
        DeviceError: One line naming the options, the GPU and its compute capability.
    """
    wanted = [
        option
        for option, on in (("trainer.autocast: bfloat16", autocast == "bfloat16"), ("trainer.compile: true", compile))
        if on
    ]
    if device.type != "cuda" or not wanted:
        return
    capability = torch.cuda.get_device_capability(device)
    if capability >= MIN_CAPABILITY:
        return
    raise DeviceError(
        f"{' and '.join(wanted)} need(s) a GPU of compute capability {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer,"
        f" but {device} is a {torch.cuda.get_device_name(device)} of compute capability"
        f" {capability[0]}.{capability[1]}; set trainer.autocast: none and trainer.compile: false"
    )


#: glibc's mallopt parameters, and the largest mmap threshold it accepts on 64-bit systems (32 MiB).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX = -1, -3, 32 * 1024 * 1024


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep the memory of freed tensors for reuse instead of handing it back to the kernel.

    PyTorch's CPU allocator returns every freed tensor to malloc. glibc serves blocks above its mmap
    threshold (128 KiB at first, raised only once such a block is freed) with fresh mappings and
    unmaps them on free, so each training step can map and zero-fill its activations again. Two runs
    of the same demo brain training took 3.4 and 0.18 million page faults, the first with 10 % of
    its time in the kernel. A fixed threshold of 32 MiB and no trimming keep that memory in the
    heap. Only where memory comes from changes, not what is computed. Does nothing (and returns
    False) outside glibc; called once per process.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    )


def make_deterministic(seed: int, threads: int | None = None, compile: bool = False) -> None:
    """Seed torch and request deterministic kernels, so that a CPU run is reproducible bit for bit.

    Args:
        compile: ``trainer.compile``: torch.compile's kernels are asked for determinism too.
    """
    # cuBLAS needs a fixed workspace to be deterministic; it must be set before CUDA initialises.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if compile:
        torch.use_deterministic_algorithms(True, warn_only=True)
    else:
        # The public call also sets torch.compile's flag, whose import (torch._inductor, torch._dynamo) costs about
        # 2 s of every job's start; the kernels' own switch is this one.
        torch._C._set_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def configure_cuda_kernels(device: torch.device, tf32: bool, benchmark: bool) -> None:
    """Kernel choices of a CUDA training run: TF32 for the U-net, cuDNN's autotuner, no determinism request.

    Bit-exact runs and resumes are a CPU property (:func:`make_deterministic`). On CUDA the U-net's
    bilinear upsampling and FLIP's gathers have no deterministic backward kernel, so requesting
    deterministic algorithms would slow cuDNN down and still not make a run repeatable; it is
    lifted here. The losses keep full float32 whatever ``tf32`` says (:func:`ieee_float32`).
    Nothing changes on the CPU.

    Args:
        device: The training device.
        tf32: ``trainer.tf32``: let float32 convolutions and products of the U-net use TF32.
        benchmark: ``trainer.cudnn_benchmark``: let cuDNN time its algorithms for each new input
            shape and keep the fastest (a gain for fixed-size crops; each validation shape is timed once).
    """
    if device.type != "cuda":
        return
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = benchmark
    for owner, name, value in float32_precision_flags(tf32):
        setattr(owner, name, value)
