"""Device selection without silent CPU fallback, GPU feature checks and the no-TF32 scope.

GPUs are simulated (torch.cuda functions patched) where the machine has none; the explicit-CUDA
error runs against the real torch of this machine when it has no CUDA device.
"""

import logging
import platform
import stat

import pytest
import torch

from lossbench.core.precision import ieee_float32, ieee_float32_autograd
from lossbench.train.device import (
    DeviceError,
    check_gpu_features,
    configure_cuda_kernels,
    driver_description,
    keep_freed_memory,
    select_device,
)


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.mark.parametrize("requested", ["cuda", "cuda:1"])
def test_explicit_cuda_without_cuda_raises_with_wheel_and_driver_versions(no_cuda, requested):
    with pytest.raises(DeviceError) as error:
        select_device(requested)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(
        f"device: {requested} is configured but CUDA is unavailable (torch {torch.__version__} is "
    )
    assert (f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build") in message
    assert "driver" in message and "CUDA_VISIBLE_DEVICES=" in message and "set device: auto" in message


def test_auto_without_cuda_falls_back_to_the_cpu_with_a_warning(no_cuda, caplog):
    with caplog.at_level(logging.WARNING, "lossbench.train.device"):
        assert select_device("auto") == torch.device("cpu")
    assert "no CUDA device available" in caplog.text and "torch " in caplog.text
    assert select_device("cpu") == torch.device("cpu")


def test_unknown_device_name_is_one_line():
    with pytest.raises(DeviceError, match=r"^device: expected auto, cpu, cuda or cuda:N, got 'gpu0'$"):
        select_device("gpu0")


def test_pinned_device_beyond_the_visible_ones_raises_and_the_chosen_one_becomes_current(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", calls.append)
    with pytest.raises(DeviceError, match=r"device: cuda:2 is configured but 2 CUDA device\(s\) are visible"):
        select_device("cuda:2")
    assert select_device("cuda:1") == torch.device("cuda", 1)
    assert calls == [torch.device("cuda", 1)]


def test_driver_is_read_from_nvidia_smi_or_the_kernel_module(tmp_path):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho '| NVIDIA-SMI 535.183.01   Driver Version: 535.183.01   CUDA Version: 12.2 |'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IXUSR)
    missing = tmp_path / "absent"
    assert driver_description(missing, str(smi)) == "NVIDIA driver 535.183.01 (supports CUDA up to 12.2)"
    version = tmp_path / "version"
    version.write_text(
        "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  560.35.03  Release Build  (dvs-builder@U16)\n"
    )
    assert driver_description(version, str(missing)) == "NVIDIA driver 560.35.03"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\n")
    assert driver_description(version, str(missing)) == "NVIDIA driver 550.54.15"
    assert driver_description(missing, str(missing)) == "no NVIDIA driver found"


@pytest.fixture
def v100(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100-SXM2-16GB")


@pytest.mark.parametrize(
    ("autocast", "compile", "options"),
    [
        ("bfloat16", False, "trainer.autocast: bfloat16 need"),
        ("none", True, "trainer.compile: true need"),
        ("bfloat16", True, "trainer.autocast: bfloat16 and trainer.compile: true need"),
    ],
)
def test_bf16_and_compile_are_refused_below_compute_capability_8(v100, autocast, compile, options):
    with pytest.raises(DeviceError) as error:
        check_gpu_features(torch.device("cuda", 1), autocast, compile)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(options)
    assert "compute capability 8.0 or newer, but cuda:1 is a Tesla V100-SXM2-16GB of compute capability 7.0" in message


def test_bf16_and_compile_pass_on_ampere_and_on_the_cpu(monkeypatch, v100):
    check_gpu_features(torch.device("cuda", 0), "none", False)
    check_gpu_features(torch.device("cpu"), "bfloat16", True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    check_gpu_features(torch.device("cuda", 0), "bfloat16", True)


def test_ieee_scope_restores_the_callers_tf32_setting():
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    try:
        conv.fp32_precision = "tf32"
        with ieee_float32():
            assert conv.fp32_precision == "ieee"
        assert conv.fp32_precision == "tf32"
        with pytest.raises(KeyError), ieee_float32():
            raise KeyError
        assert conv.fp32_precision == "tf32"
    finally:
        conv.fp32_precision = before


@pytest.fixture
def kernel_settings():
    """Restores the global kernel settings that configure_cuda_kernels changes."""
    conv, matmul = torch.backends.cudnn.conv, torch.backends.cuda.matmul
    before = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        torch.backends.cudnn.benchmark,
        conv.fp32_precision,
        matmul.fp32_precision,
    )
    yield
    torch.use_deterministic_algorithms(before[0], warn_only=before[1])
    torch.backends.cudnn.benchmark, conv.fp32_precision, matmul.fp32_precision = before[2:]


def test_cuda_kernels_are_configured_only_on_cuda(kernel_settings):
    # Only flags are set, so a CUDA device object serves without a GPU.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    configure_cuda_kernels(torch.device("cpu"), tf32=True, benchmark=True)
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    configure_cuda_kernels(torch.device("cuda", 0), tf32=False, benchmark=True)
    assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("ieee", "ieee")
    configure_cuda_kernels(torch.device("cuda", 0), tf32=True, benchmark=False)
    assert not torch.backends.cudnn.benchmark
    assert (torch.backends.cudnn.conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision) == ("tf32", "tf32")
    # The losses' scope still wins inside.
    with ieee_float32():
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"


def test_ieee_float32_autograd_gives_the_plain_value_and_gradients():
    def function(a, b):
        return (torch.nn.functional.conv2d(a, b.expand(1, 2, 3, 3)) ** 2).sum() + (a @ a.transpose(-1, -2)).mean()

    a = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    b = torch.rand(1, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    plain = function(a, b)
    expected = torch.autograd.grad(plain, (a, b))
    wrapped = ieee_float32_autograd(function, a, b)
    assert torch.equal(wrapped, plain.detach())
    assert all(torch.equal(got, want) for got, want in zip(torch.autograd.grad(wrapped, (a, b)), expected))
    # Only the inputs that need a gradient get one; without grad mode it is a plain call.
    assert ieee_float32_autograd(function, a, b.detach()).grad_fn is not None
    with torch.no_grad():
        assert ieee_float32_autograd(function, a, b).grad_fn is None
    wrapped = ieee_float32_autograd(function, a, b)
    wrapped.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second time"):
        wrapped.backward()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_glibc_keeps_freed_memory_after_the_training_setup():
    # mallopt returns 0 for a parameter or value it refuses (an mmap threshold above its 32 MiB maximum).
    assert keep_freed_memory() is True
