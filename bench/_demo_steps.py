"""The demo's training steps on the CPU, per task and loss, in today's default against the previous one.

Part of ``python bench/train_step.py`` (its JSON's ``demo_steps``; ``--demo-repeats 0`` skips it). Each step is
timed in its parts: the network's forward and backward, the loss's forward and backward, and the optimiser with
the finite checks. The network's rate in GFLOP/s is set against this core's measured peak (a 1024² float32 and
bfloat16 matrix product in the same run). ``previous`` is the default before issue 31: float32 in NCHW, the 1×1
reduction after the bilinear upsampling, gradients and weights checked every step; ``current`` is config.yaml's
trainer resolved on this machine (:func:`lossbench.train.device.resolve_layout`: float32 in NHWC on the CPU),
checked every 10 steps; bfloat16 in NHWC and in NCHW are timed too (:data:`VARIANTS`). All run side by side,
interleaved, one thread, on the same inputs and initial weights, so that the machine's noise falls on all alike;
the medians are reported.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from lossbench.data.tasks import channels
from lossbench.models.unet import UNet
from lossbench.pipeline.config import load
from lossbench.pipeline.job_settings import run_settings
from lossbench.train.loop import build_loss, build_model
from lossbench.train.run_settings import RunSettings
from lossbench.train.step import _all_finite, _autocast, _to_device

REPO = Path(__file__).resolve().parents[1]


#: The variants timed besides ``current`` (config.yaml's trainer as resolved here): the previous default, and
#: bfloat16 autocast, the opt-in, in both layouts (each with the 1×1 reduction before the upsampling and checks
#: every 10 steps).
VARIANTS = {
    "previous": {"channels_last": False, "autocast": "none"},
    "bfloat16_nhwc": {"channels_last": True, "autocast": "bfloat16"},
    "bfloat16_nchw": {"channels_last": False, "autocast": "bfloat16"},
}


class PreviousUNet(UNet):
    """The U-net before issue 31: the 1×1 reduction after the bilinear upsampling (the same function, more work)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        skips, x = [], image  # the demo's crops are multiples of 2**depth: no padding
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for reduce, block, skip in zip(self.reduce, self.decoder, reversed(skips)):
            upsampled = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([skip, reduce(upsampled)], dim=1))
        return image + self.head(x) if self.residual else self.head(x)


def matmul_peak(dtype: torch.dtype, side: int = 1024, repeats: int = 5) -> float:
    """GFLOP/s of a ``side``² matrix product in ``dtype`` on this core: the ceiling the network's rate is set to."""
    a, b = torch.rand(side, side).to(dtype), torch.rand(side, side).to(dtype)
    a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * side**3 / min(times) / 1e9


class Setup:
    """One (task, loss, variant): the network, loss, optimiser and batch, and the timing of a step's parts."""

    def __init__(self, settings: RunSettings, previous: bool) -> None:
        torch.manual_seed(settings.seed)
        network = build_model(settings)
        if previous:
            network.__class__ = PreviousUNet  # the same weights, the previous order of the decoder's operations
        self.settings, self.device = settings, torch.device("cpu")
        layout = torch.channels_last if settings.trainer.channels_last else torch.contiguous_format
        self.network = network.to(memory_format=layout)
        self.loss_fn = build_loss(settings)
        self.parameters = list(self.network.parameters()) + list(self.loss_fn.parameters())
        self.optimizer = torch.optim.Adam(self.parameters, lr=settings.lr)
        generator = torch.Generator().manual_seed(0)
        crop, count = settings.data["crop"], settings.training.batch_size
        clean = torch.rand(count, channels(settings.kind), crop, crop, generator=generator)
        degraded = (clean + 0.1 * torch.randn(clean.shape, generator=generator)).clamp(0, 1)
        self.batch = _to_device(degraded, self.device, settings.trainer), clean
        self.check_every = 1 if previous else 10
        self.steps = 0

    def step(self) -> dict[str, float]:
        """One training step; seconds of its parts."""
        degraded, clean = self.batch
        parts: dict[str, float] = {}
        clock = time.perf_counter()
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(self.device, self.settings.trainer):
            output = self.network(degraded)
        parts["network_forward"], clock = time.perf_counter() - clock, time.perf_counter()
        with _autocast(self.device, self.settings.trainer):
            loss = self.loss_fn(output, clean)
        float(loss.detach())
        parts["loss_forward"], clock = time.perf_counter() - clock, time.perf_counter()
        loss.backward()
        parts["backward"], clock = time.perf_counter() - clock, time.perf_counter()
        self.steps += 1
        check = self.steps % self.check_every == 0
        if check:
            _all_finite([p.grad for p in self.parameters if p.grad is not None])
        self.optimizer.step()
        if check:
            _all_finite(self.parameters)
        parts["optimiser_and_checks"] = time.perf_counter() - clock
        return parts

    def loss_backward_seconds(self) -> float:
        """The loss's own backward, on a detached network output (the rest of ``backward`` is the network's)."""
        degraded, clean = self.batch
        with torch.no_grad(), _autocast(self.device, self.settings.trainer):
            output = self.network(degraded)
        output = output.detach().requires_grad_()
        with _autocast(self.device, self.settings.trainer):
            loss = self.loss_fn(output, clean)
        started = time.perf_counter()
        loss.backward()
        return time.perf_counter() - started


def network_flops(setup: Setup) -> int:
    """FLOPs of the network's forward and backward on the setup's batch."""
    with FlopCounterMode(display=False) as counter:
        setup.network(setup.batch[0].float()).square().mean().backward()
    setup.network.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def _median_parts(samples: list[dict[str, float]]) -> dict[str, float]:
    return {part: statistics.median(sample[part] for sample in samples) for part in samples[0]}


def measure(config_path: Path, tasks: list[str], repeats: int) -> dict:
    """Per task and loss, each variant's median milliseconds per step and its parts, the network's GFLOP/s, and the
    speed-up of ``current`` over ``previous``."""
    torch.set_num_threads(1)
    config = load(config_path, require_data=False)
    peaks = {"float32": matmul_peak(torch.float32), "bfloat16": matmul_peak(torch.bfloat16)}
    results: dict[str, dict] = {}
    for task in tasks:
        for loss in config["losses"]:
            current = run_settings(config, task, loss, 0)
            setups = {
                name: Setup(replace(current, trainer=replace(current.trainer, **trainer)), name == "previous")
                for name, trainer in VARIANTS.items()
            }
            setups["current"] = Setup(current, previous=False)
            flops = network_flops(setups["previous"])
            samples: dict[str, list] = {name: [] for name in setups}
            loss_backward: dict[str, list] = {name: [] for name in setups}
            for _ in range(3):  # warm-up: oneDNN's kernels, the allocator, the losses' lazy buffers
                for setup in setups.values():
                    setup.step()
            for _ in range(repeats):
                for name, setup in setups.items():
                    samples[name].append(setup.step())
                    loss_backward[name].append(setup.loss_backward_seconds())
            row = {}
            for name, setup in setups.items():
                parts = _median_parts(samples[name])
                loss_back = statistics.median(loss_backward[name])
                network_seconds = parts["network_forward"] + parts["backward"] - loss_back
                row[name] = {
                    "trainer": {
                        "channels_last": setup.settings.trainer.channels_last,
                        "autocast": setup.settings.trainer.autocast,
                        "finite_check_every": setup.check_every,
                    },
                    "ms_per_step": 1000 * sum(parts.values()),
                    "ms": {
                        "network": 1000 * network_seconds,
                        "loss": 1000 * (parts["loss_forward"] + loss_back),
                        "optimiser_and_checks": 1000 * parts["optimiser_and_checks"],
                    },
                    "network_gflops_per_second": flops / network_seconds / 1e9,
                }
            for name in setups:
                row[name]["speedup"] = row["previous"]["ms_per_step"] / row[name]["ms_per_step"]
            row["speedup"] = row["current"]["speedup"]
            results[f"{task}/{loss}"] = row
            print(
                f"{task}/{loss}: {row['previous']['ms_per_step']:.1f} -> {row['current']['ms_per_step']:.1f} ms"
                f" ({row['speedup']:.2f}x); network {row['previous']['network_gflops_per_second']:.0f} ->"
                f" {row['current']['network_gflops_per_second']:.0f} GFLOP/s",
                flush=True,
            )
    return {"peak_gflops_per_second": peaks, "threads": 1, "repeats": repeats, "torch": torch.__version__, **results}
