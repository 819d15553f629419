"""The workflow's inference: a trained model on the validation set (rule ``infer``)."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lossbench.data.valset import ImageFile, write_images
from lossbench.train.device import configure_cuda_kernels, select_device
from lossbench.train.loop import load_model

# The package's one log, "lossbench.infer", whichever of its modules writes.
log = logging.getLogger(__package__)


@torch.no_grad()
def run(
    model_path: str | Path,
    valset_path: str | Path,
    out_path: str | Path,
    device: str = "auto",
    threads: int | None = None,
) -> int:
    """Restore every validation input with the model and write the outputs (group ``output``).

    Outputs are written clamped to [0, 1], as an image file of them would be; the share of values
    the clamp changed is logged, since a model (a FLIP-trained one in particular) may leave the range.

    Returns:
        The number of images written.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    target_device = select_device(device)
    model, run_settings = load_model(model_path, target_device)
    configure_cuda_kernels(target_device, run_settings.trainer.tf32, run_settings.trainer.cudnn_benchmark)  # as trained
    log.info(
        "inference of %s/%s seed %d on %s", run_settings.task, run_settings.loss.name, run_settings.seed, target_device
    )
    with ImageFile(valset_path) as valset:
        outside = total = 0

        def outputs():
            nonlocal outside, total
            for image_id, degraded in valset.items("input"):
                restored = model(torch.from_numpy(degraded)[None].to(target_device))[0].float()
                outside += int(((restored < 0) | (restored > 1)).sum())
                total += restored.numel()
                yield image_id, restored.clamp(0.0, 1.0).cpu().numpy()

        write_images(
            out_path,
            {"output": outputs()},
            {"task": run_settings.task, "loss": run_settings.loss.name, "seed": run_settings.seed},
        )
        log.info("%.2f%% of output values were outside [0, 1] and were clamped", 100.0 * outside / max(total, 1))
        return len(valset.ids)
