"""One short GPU check of the CUDA path (issue 14), for a session that has a GPU for a few minutes.

    python bench/cuda_check.py [--out bench/cuda_check.json] [--steps 10] [--no-compile] [--no-train-run]

Four stages, each recorded in the JSON (GPU name, capability, torch and CUDA versions on top):

1. ``losses``: every loss on the paper-shape U-net (width 32, depth 4, 256×256, batch 16): images/s of
   a whole step (forward, loss, backward, Adam) in fp32 (no TF32), TF32, and bfloat16 + channels_last,
   the loss's share of the step (its forward+backward timed alone on the U-net's output), and whether
   a step after the first performs a host-device sync (``torch.cuda.set_sync_debug_mode("error")``).
2. ``tf32_scope``: MS-SSIM, FLIP and LPIPS value and gradient on CUDA with TF32 switched on globally,
   relative to the CPU: their no-TF32 scopes should keep both near 1e-5 (TF32 would give 1e-3 or more).
3. ``compile``: the l2 step under ``torch.compile`` with bfloat16 and channels_last, its images/s, and
   how many graphs dynamo compiled for full batches followed by a short last batch (expected: 2, the
   second with a dynamic batch size, after which short batches reuse it).
4. ``train_run``: :func:`lossbench.train.run` end to end on the demo configuration with ``device:
   cuda``, bfloat16, channels_last, compile, cudnn_benchmark and 2 persistent workers, 2 epochs.

Without CUDA it prints why and exits 0, writing nothing; ``--cpu-dry-run`` instead runs stages 1, 2
and 4 on the CPU at a tiny size (no timing meaning, no sync check) to test the script itself. A stage
that fails records its one-line error and the others still run; the exit status is 1 if any did.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import yaml

from lossbench import losses, train
from lossbench.config import train_spec, validate
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.device import configure_cuda_kernels
from lossbench.models import UNet

REPO = Path(__file__).resolve().parents[1]
#: The thesis's U-net and crops (config/paper.yaml, denoising).
WIDTH, DEPTH, CROP, BATCH = 32, 4, 256, 16
#: Beyond each loss's portable parameters (any image size, no downloads): LPIPS+l2's ``balance`` path,
#: whose weight is set on the device in the first step, is the one that could sync.
EXTRA_PARAMS = {"lpips_l2": {"l2_weight": "balance"}}


def loss_params(name: str) -> dict:
    """Constructor arguments of loss ``name`` for the check."""
    return {**losses.spec(name).portable_params, **EXTRA_PARAMS.get(name, {})}


def _batch(device: torch.device, batch: int, crop: int, channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, crop, crop, generator=generator)
    degraded = clean + 25 / 255 * torch.randn(clean.shape, generator=generator)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return degraded.to(device).contiguous(memory_format=layout), clean.to(device)


def _setup(name: str, device: torch.device, channels_last: bool, width: int) -> tuple[UNet, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = UNet(3, 3, width=width, depth=DEPTH, residual=False).to(device, memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    loss_fn = train.build_loss({"loss": name, "loss_params": loss_params(name), "kind": "rgb_denoise"}).to(device)
    return model, loss_fn, torch.optim.Adam(list(model.parameters()) + list(loss_fn.parameters()), lr=1e-4)


def _step(forward, loss_fn, optimizer, batch, bf16: bool) -> torch.Tensor:
    degraded, clean = batch
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(degraded.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = loss_fn(forward(degraded), clean)
    loss.backward()
    optimizer.step()
    return loss.detach()


def _timed(function, repeats: int) -> float:
    """Median seconds of ``function()`` over ``repeats`` calls, synchronised around each."""
    times = []
    for _ in range(repeats):
        _synchronize()
        started = time.perf_counter()
        function()
        _synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _tf32(enabled: bool) -> None:
    configure_cuda_kernels(torch.device("cuda"), tf32=enabled, benchmark=True)


def check_losses(device: torch.device, steps: int, batch_size: int, crop: int, width: int) -> dict:
    results = {}
    for name in losses.names():
        entry = {}
        for variant, (tf32, bf16) in {"fp32": (False, False), "tf32": (True, False), "bf16_channels_last": (True, True)}.items():
            _tf32(tf32)
            model, loss_fn, optimizer = _setup(name, device, channels_last=bf16, width=width)
            batch = _batch(device, batch_size, crop, channels_last=bf16)
            _step(model, loss_fn, optimizer, batch, bf16)  # warm-up: cuDNN autotuning, caches, allocator
            entry[f"images_per_second_{variant}"] = batch_size / _timed(lambda: _step(model, loss_fn, optimizer, batch, bf16), steps)
        with torch.no_grad():
            output = model(batch[0]).float()
        output.requires_grad_()
        loss_seconds = _timed(lambda: loss_fn(output, batch[1]).backward(), steps)
        entry["loss_share_of_step"] = loss_seconds / (batch_size / entry["images_per_second_bf16_channels_last"])
        if device.type != "cuda":
            results[name] = entry
            continue
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            _step(model, loss_fn, optimizer, batch, True)
            entry["host_sync_in_step"] = None
        except RuntimeError as error:
            entry["host_sync_in_step"] = str(error).splitlines()[0]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        results[name] = entry
        print(name, json.dumps(entry), flush=True)
    return results


def check_tf32_scope(device: torch.device, crop: int) -> dict:
    _tf32(True)
    results = {}
    generator = torch.Generator().manual_seed(1)
    target = torch.rand(2, 3, crop, crop, generator=generator)
    noisy = (target + 0.02 * torch.randn(target.shape, generator=generator)).clamp(0, 1)
    for name in ("msssim", "flip", "lpips_l2"):
        values = {}
        for where in ("cpu", device):
            loss_fn = train.build_loss({"loss": name, "loss_params": loss_params(name), "kind": "rgb_denoise"}).to(where)
            output = noisy.to(where).requires_grad_()
            loss = loss_fn(output, target.to(where))
            loss.backward()
            values[str(where)] = (loss.item(), output.grad.cpu())
        (cpu_value, cpu_grad), (cuda_value, cuda_grad) = values["cpu"], values[str(device)]
        results[name] = {
            "value_relative_difference": abs(cuda_value - cpu_value) / abs(cpu_value),
            "gradient_relative_difference": float((cuda_grad - cpu_grad).norm() / cpu_grad.norm()),
        }
        print(name, json.dumps(results[name]), flush=True)
    return results


def check_compile(device: torch.device, steps: int, batch_size: int, crop: int, width: int) -> dict:
    _tf32(True)
    torch._dynamo.reset()
    model, loss_fn, optimizer = _setup("l2", device, channels_last=True, width=width)
    forward = torch.compile(model)
    full, short = _batch(device, batch_size, crop, channels_last=True), _batch(device, batch_size // 2 - 1, crop, channels_last=True)
    started = time.perf_counter()
    for batch in (full, full, short, full, short):
        _step(forward, loss_fn, optimizer, batch, True)
    torch.cuda.synchronize()
    compile_seconds = time.perf_counter() - started
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    result = {
        "first_steps_seconds": compile_seconds,
        "unique_graphs": graphs,
        "images_per_second": batch_size / _timed(lambda: _step(forward, loss_fn, optimizer, full, True), steps),
    }
    print("compile", json.dumps(result), flush=True)
    return result


def check_train_run(device: str) -> dict:
    with open(REPO / "config.yaml") as handle:
        config = yaml.safe_load(handle)
    config = copy.deepcopy(config)
    config["device"] = device
    config["trainer"].update(autocast="bfloat16", channels_last=True, compile=device == "cuda", cudnn_benchmark=True)
    config = validate(config)
    spec = train_spec(config, "denoise", "flip", 0)
    spec["training"].update(epochs=2, workers=2)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        prepare_embedded_photos(["chelsea", "rocket", "coffee"], root / "train", max_side=256)
        prepare_embedded_photos(["astronaut"], root / "val", max_side=200)
        write_valset("rgb_denoise", spec["data"], root / "val", root / "val.h5")
        started = time.perf_counter()
        train.run(spec, root / "train", root / "val.h5", root / "out", root / "checkpoints", device=device, threads=4, progress=False, checkpoint_every=5)
        seconds = time.perf_counter() - started
        with open(root / "out" / "curve.csv") as handle:
            curve = handle.read()
    result = {"seconds": seconds, "curve": curve}
    print("train_run", json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/cuda_check.json")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile stage")
    parser.add_argument("--no-train-run", action="store_true", help="skip the end-to-end training run")
    parser.add_argument("--cpu-dry-run", action="store_true", help="run the stages on the CPU at a tiny size, to test this script")
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        device, batch, crop, width, steps = torch.device("cpu"), 2, 32, 4, 1
        report = {"gpu": None, "dry_run": True}
    elif not torch.cuda.is_available():
        print(f"cuda_check: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): skipped, nothing written")
        return 0
    else:
        device, batch, crop, width, steps = torch.device("cuda", torch.cuda.current_device()), BATCH, CROP, WIDTH, args.steps
        report = {
            "gpu": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    report.update(torch=torch.__version__, batch=batch, crop=crop, width=width, depth=DEPTH, steps=steps)
    stages = {"losses": lambda: check_losses(device, steps, batch, crop, width), "tf32_scope": lambda: check_tf32_scope(device, crop)}
    if not (args.no_compile or args.cpu_dry_run):
        stages["compile"] = lambda: check_compile(device, steps, batch, crop, width)
    if not args.no_train_run:
        stages["train_run"] = lambda: check_train_run(device.type)
    failed = False
    for stage, run in stages.items():
        started = time.perf_counter()
        try:
            report[stage] = run()
        except Exception as error:  # one stage's failure is a result; the others still run
            failed = True
            report[stage] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
            traceback.print_exc()
        report.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - started, 1)
        with open(args.out, "w") as handle:  # after every stage, so a timeout keeps what was measured
            json.dump(report, handle, indent=2)
    print(f"cuda_check: wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
