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
4. ``resume``: Adam steps (the adaptive loss, whose parameters are optimised too), a checkpoint
   written and read back by :mod:`lossbench.train.checkpoint` (RNG states included), a fresh model and optimiser
   resumed from it: every ``optimizer.state[*]["step"]`` must be on the CPU (on the GPU each of Adam's
   ``.item()`` calls is a sync), the moments on the GPU, and the resumed steps must run under
   ``torch.cuda.set_sync_debug_mode("error")``; the resumed weights are compared with an
   uninterrupted run's.
5. ``train_run``: :func:`lossbench.train.loop.run` end to end on the demo configuration with ``device:
   cuda``, bfloat16, channels_last, compile, cudnn_benchmark and 2 persistent workers, 2 epochs (the
   dry run: 1 epoch of 3 batches); then :func:`lossbench.infer.run` of the model it wrote, with the
   kernel flags set the other way first: inference must set the model's ``trainer.tf32`` and
   ``cudnn_benchmark`` again.

Without CUDA it prints why and exits 0, writing nothing; ``--cpu-dry-run`` instead runs stages 1, 2,
4 and 5 on the CPU at a tiny size (no timing meaning, no sync check) to test the script itself. A stage
that fails records its one-line error and the others still run. The JSON's ``failed`` lists, one line
each, every stage error, host sync, TF32 leak beyond the tolerances, unexpected graph count and
resume defect (:func:`failures`); the exit status is 1 if there is any.
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

from lossbench import infer, losses
from lossbench.core.precision import float32_precision_flags
from lossbench.data.tasks import channels, prepare_embedded_photos, write_valset
from lossbench.models import UNet
from lossbench.pipeline.config import validate
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import checkpoint
from lossbench.train import loop as training
from lossbench.train.device import configure_cuda_kernels
from lossbench.train.run_settings import Trainer

REPO = Path(__file__).resolve().parents[1]
#: The thesis's U-net and crops (config/paper.yaml, denoising).
WIDTH, DEPTH, CROP, BATCH = 32, 4, 256, 16
#: Beyond each loss's portable parameters (any image size, no downloads): LPIPS+l2's ``balance`` path,
#: whose weight is set on the device in the first step, is the one that could sync.
EXTRA_PARAMS = {"lpips_l2": {"l2_weight": "balance"}}
#: CUDA against CPU relative differences allowed in ``tf32_scope``. Measured on the CPU at the
#: check's size (2×3×256×256): float32 against float64 differs by 3e-4 in MS-SSIM's loss value (1 −
#: MS-SSIM ≈ 2e-3, so float32's rounding is magnified 500×) and by 7e-5 in its gradient, LPIPS+l2 (128×128) by
#: 3e-8 in both; rounding the convolution inputs to TF32 instead changes MS-SSIM's value by 0.8 and its
#: gradient by 0.19, LPIPS+l2's value by 1.4e-4 and its gradient by 0.05 (at 64×64). The gradient's
#: tolerance sits 15× above the float32 noise and 50× below TF32's effect; the value's is looser
#: because MS-SSIM's own float32 noise is near 1e-3 once CPU and CUDA each add theirs (LPIPS's TF32
#: leak shows in its gradient). FLIP computes in float32 only, so its noise could not be measured.
VALUE_TOLERANCE, GRADIENT_TOLERANCE = 1e-2, 1e-3
#: Graphs dynamo should compile in ``compile``: full batches, then one with a dynamic batch size that
#: every later short batch reuses.
EXPECTED_GRAPHS = 2
#: The resume stage's loss: its learnable parameters put Adam state on the loss module as well.
RESUME_LOSS = "adaptive"


def build_loss(name: str) -> torch.nn.Module:
    """Loss ``name`` for RGB images, with its portable parameters and those of :data:`EXTRA_PARAMS`."""
    return losses.spec(name).build(
        {**losses.spec(name).portable_params, **EXTRA_PARAMS.get(name, {})}, channels("rgb_denoise")
    )


def _batch(
    device: torch.device, batch: int, crop: int, channels_last: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    clean = torch.rand(batch, 3, crop, crop, generator=generator)
    degraded = clean + 25 / 255 * torch.randn(clean.shape, generator=generator)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    return degraded.to(device).contiguous(memory_format=layout), clean.to(device)


def _setup(
    name: str, device: torch.device, channels_last: bool, width: int
) -> tuple[UNet, torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = UNet(3, 3, width=width, depth=DEPTH, residual=False).to(
        device, memory_format=torch.channels_last if channels_last else torch.contiguous_format
    )
    loss_fn = build_loss(name).to(device)
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


def _host_sync(function) -> str | None:
    """None if ``function()`` performs no host-device sync, else the first line of the error that
    ``torch.cuda.set_sync_debug_mode("error")`` raised at the first one."""
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        function()
        return None
    except RuntimeError as error:
        return str(error).splitlines()[0]
    finally:
        torch.cuda.set_sync_debug_mode("default")


def check_losses(device: torch.device, steps: int, batch_size: int, crop: int, width: int) -> dict:
    results = {}
    for name in losses.names():
        entry = {}
        for variant, (tf32, bf16) in {
            "fp32": (False, False),
            "tf32": (True, False),
            "bf16_channels_last": (True, True),
        }.items():
            _tf32(tf32)
            model, loss_fn, optimizer = _setup(name, device, channels_last=bf16, width=width)
            batch = _batch(device, batch_size, crop, channels_last=bf16)
            _step(model, loss_fn, optimizer, batch, bf16)  # warm-up: cuDNN autotuning, caches, allocator
            entry[f"images_per_second_{variant}"] = batch_size / _timed(
                lambda: _step(model, loss_fn, optimizer, batch, bf16), steps
            )
        with torch.no_grad():
            output = model(batch[0]).float()
        output.requires_grad_()
        loss_seconds = _timed(lambda: loss_fn(output, batch[1]).backward(), steps)
        entry["loss_share_of_step"] = loss_seconds / (batch_size / entry["images_per_second_bf16_channels_last"])
        if device.type != "cuda":
            results[name] = entry
            continue
        entry["host_sync_in_step"] = _host_sync(lambda: _step(model, loss_fn, optimizer, batch, True))
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
            loss_fn = build_loss(name).to(where)
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
    full, short = (
        _batch(device, batch_size, crop, channels_last=True),
        _batch(device, batch_size // 2 - 1, crop, channels_last=True),
    )
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


def check_resume(device: torch.device, steps: int, batch_size: int, crop: int, width: int) -> dict:
    _tf32(False)
    batch = _batch(device, batch_size, crop)
    model, loss_fn, optimizer = _setup(RESUME_LOSS, device, channels_last=False, width=width)
    for _ in range(steps):
        _step(model, loss_fn, optimizer, batch, False)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint.save_checkpoint(
            Path(folder),
            {
                "model": model.state_dict(),
                "loss": loss_fn.state_dict(),
                "optimizer": optimizer.state_dict(),
                "rng": checkpoint.rng_states(device),
                "progress": {"step": steps},
            },
        )
        saved, _ = checkpoint.load_checkpoint(Path(folder))
    resumed_model, resumed_loss, resumed_optimizer = _setup(RESUME_LOSS, device, channels_last=False, width=width)
    resumed_model.load_state_dict(saved["model"])
    resumed_loss.load_state_dict(saved["loss"])
    resumed_optimizer.load_state_dict(saved["optimizer"])
    checkpoint.restore_rng_states(saved["rng"], device)
    states = list(resumed_optimizer.state.values())
    result = {
        "optimizer_states": len(states),
        "step_devices": sorted({str(state["step"].device) for state in states}),
        "moment_devices": sorted({str(state[key].device) for state in states for key in ("exp_avg", "exp_avg_sq")}),
    }

    def resumed_steps() -> None:
        for _ in range(steps):
            _step(resumed_model, resumed_loss, resumed_optimizer, batch, False)

    if device.type == "cuda":
        result["host_sync_in_resumed_steps"] = _host_sync(resumed_steps)
    else:
        resumed_steps()
    for _ in range(steps):  # the same steps without the interruption
        _step(model, loss_fn, optimizer, batch, False)
    with torch.no_grad():
        result["weights_relative_difference"] = max(
            float((resumed - original).norm() / original.norm().clamp_min(1e-30))
            for resumed, original in zip(
                [*resumed_model.parameters(), *resumed_loss.parameters()], [*model.parameters(), *loss_fn.parameters()]
            )
        )
    print("resume", json.dumps(result), flush=True)
    return result


def failures(report: dict) -> list[str]:
    """One line per defect in ``report``: a stage's error, a host sync in a step, a loss whose CUDA
    value or gradient departs from the CPU's beyond the tolerances (TF32 inside it), a graph count
    other than :data:`EXPECTED_GRAPHS`, Adam state on the wrong device after a resume."""
    found = [
        f"{stage}: {result['error']}"
        for stage, result in report.items()
        if isinstance(result, dict) and "error" in result
    ]
    for name, entry in report.get("losses", {}).items():
        if entry.get("host_sync_in_step"):
            found.append(f"losses.{name}: a training step syncs with the host: {entry['host_sync_in_step']}")
    for name, entry in report.get("tf32_scope", {}).items():
        for key, tolerance in (
            ("value_relative_difference", VALUE_TOLERANCE),
            ("gradient_relative_difference", GRADIENT_TOLERANCE),
        ):
            if key in entry and not entry[key] <= tolerance:
                found.append(f"tf32_scope.{name}: {key} {entry[key]:.3g} above {tolerance:g} (TF32 inside the loss?)")
    graphs = report.get("compile", {}).get("unique_graphs")
    if graphs is not None and graphs != EXPECTED_GRAPHS:
        found.append(f"compile: dynamo compiled {graphs} graphs, expected {EXPECTED_GRAPHS} (recompilations)")
    resume = report.get("resume", {})
    if "step_devices" in resume and resume["step_devices"] != ["cpu"]:
        found.append(
            f"resume: Adam's step counters are on {', '.join(resume['step_devices'])} after a resume, expected cpu only"
        )
    if "moment_devices" in resume and resume["moment_devices"] != [report["device"]]:
        found.append(
            f"resume: Adam's moments are on {', '.join(resume['moment_devices'])}, expected {report['device']}"
        )
    if resume.get("host_sync_in_resumed_steps"):
        found.append(f"resume: a resumed step syncs with the host: {resume['host_sync_in_resumed_steps']}")
    run = report.get("train_run", {})
    if run.get("inference_kernel_flags") not in (None, run.get("model_kernel_flags")):
        found.append(
            "train_run: inference ran with the kernel flags (cudnn.benchmark, float32 precisions)"
            f" {run['inference_kernel_flags']}, the model was trained with {run['model_kernel_flags']}"
        )
    return found


def _kernel_flags(trainer: Trainer) -> dict:
    """The CUDA kernel flags that :func:`configure_cuda_kernels` sets for ``trainer``: as they are now
    (``actual``) and as ``trainer`` asks (``expected``)."""
    flags = float32_precision_flags(trainer.tf32)
    return {
        "actual": [torch.backends.cudnn.benchmark, *(getattr(owner, name) for owner, name, _ in flags)],
        "expected": [trainer.cudnn_benchmark, *(value for *_, value in flags)],
    }


def check_train_run(device: str, small: bool) -> dict:
    with open(REPO / "config.yaml") as handle:
        config = yaml.safe_load(handle)
    config = copy.deepcopy(config)
    config["device"] = device
    config["trainer"].update(autocast="bfloat16", channels_last=True, compile=device == "cuda", cudnn_benchmark=True)
    config["tasks"]["denoise"]["training"].update(epochs=1 if small else 2, workers=2)
    if small:
        config["tasks"]["denoise"]["crops_per_image"] = 4
    config = validate(config)
    settings = run_settings(config, "denoise", "flip", 0)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        prepare_embedded_photos(["chelsea", "rocket", "coffee"], root / "train", max_side=256)
        prepare_embedded_photos(["astronaut"], root / "val", max_side=200)
        write_valset("rgb_denoise", settings.data, root / "val", root / "val.h5")
        started = time.perf_counter()
        training.run(
            settings,
            root / "train",
            root / "val.h5",
            root / "out",
            root / "checkpoints",
            device=device,
            threads=4,
            progress=False,
            checkpoint_every=5,
        )
        seconds = time.perf_counter() - started
        with open(root / "out" / "curve.csv") as handle:
            curve = handle.read()
        trainer = settings.trainer
        # The other way first, so that only inference itself can set them as the model was trained.
        configure_cuda_kernels(torch.device(device), tf32=not trainer.tf32, benchmark=not trainer.cudnn_benchmark)
        images = infer.run(root / "out" / "model.pt", root / "val.h5", root / "outputs.h5", device=device, threads=4)
    flags = _kernel_flags(trainer)
    result = {"seconds": seconds, "curve": curve, "inferred_images": images}
    # On the CPU the flags mean nothing and nothing sets them.
    result["inference_kernel_flags"] = flags["actual"] if device == "cuda" else None
    result["model_kernel_flags"] = flags["expected"]
    print("train_run", json.dumps(result), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/cuda_check.json")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement (median)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile stage")
    parser.add_argument("--no-train-run", action="store_true", help="skip the end-to-end training run")
    parser.add_argument(
        "--cpu-dry-run", action="store_true", help="run the stages on the CPU at a tiny size, to test this script"
    )
    args = parser.parse_args(argv)
    if args.cpu_dry_run:
        device, batch, crop, width, steps = torch.device("cpu"), 2, 32, 4, 1
        report = {"gpu": None, "dry_run": True}
    elif not torch.cuda.is_available():
        print(
            f"cuda_check: no CUDA device (torch {torch.__version__}, built for CUDA {torch.version.cuda}): skipped,"
            " nothing written"
        )
        return 0
    else:
        device, batch, crop, width, steps = (
            torch.device("cuda", torch.cuda.current_device()),
            BATCH,
            CROP,
            WIDTH,
            args.steps,
        )
        report = {
            "gpu": torch.cuda.get_device_name(device),
            "capability": ".".join(map(str, torch.cuda.get_device_capability(device))),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
    report.update(
        device=str(device), torch=torch.__version__, batch=batch, crop=crop, width=width, depth=DEPTH, steps=steps
    )
    stages = {
        "losses": lambda: check_losses(device, steps, batch, crop, width),
        "tf32_scope": lambda: check_tf32_scope(device, crop),
    }
    if not (args.no_compile or args.cpu_dry_run):
        stages["compile"] = lambda: check_compile(device, steps, batch, crop, width)
    stages["resume"] = lambda: check_resume(device, steps, batch, crop, width)
    if not args.no_train_run:
        stages["train_run"] = lambda: check_train_run(device.type, small=args.cpu_dry_run)
    for stage, run in stages.items():
        started = time.perf_counter()
        try:
            report[stage] = run()
        except Exception as error:  # one stage's failure is a result; the others still run
            report[stage] = {"error": f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"}
            traceback.print_exc()
        report.setdefault("stage_seconds", {})[stage] = round(time.perf_counter() - started, 1)
        report["failed"] = failures(report)
        with open(args.out, "w") as handle:  # after every stage, so a timeout keeps what was measured
            json.dump(report, handle, indent=2)
    for line in report["failed"]:
        print(f"cuda_check FAILED: {line}")
    print(
        f"cuda_check: wrote {args.out}"
        + (f", {len(report['failed'])} failure(s)" if report["failed"] else ", no failures")
    )
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
