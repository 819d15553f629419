"""Inference of a trained model on a task's validation set.

CLI:
    python -m lossbench.infer MODEL.pt VALSET.h5 OUTPUTS.h5 [--device auto]
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from lossbench.data.valset import ImageFile, write_images
from lossbench.device import configure_cuda_kernels, select_device
from lossbench.train import load_model

log = logging.getLogger(__name__)


@torch.no_grad()
def run(model_path: str | Path, valset_path: str | Path, out_path: str | Path, device: str = "auto", threads: int | None = None) -> int:
    """Restore every validation input with the model and write the outputs (group ``output``).

    Outputs are written clamped to [0, 1], as an image file of them would be; the share of values
    the clamp changed is logged, since a model (a FLIP-trained one in particular) may leave the range.

    Returns:
        The number of images written.
    """
    if threads is not None:
        torch.set_num_threads(threads)
    target_device = select_device(device)
    model, spec = load_model(model_path, target_device)
    configure_cuda_kernels(target_device, spec["trainer"]["tf32"], spec["trainer"]["cudnn_benchmark"])  # as trained
    log.info("inference of %s/%s seed %d on %s", spec["task"], spec["loss"], spec["seed"], target_device)
    with ImageFile(valset_path) as valset:
        outside = total = 0

        def outputs():
            nonlocal outside, total
            for image_id, degraded in valset.items("input"):
                restored = model(torch.from_numpy(degraded)[None].to(target_device))[0].float()
                outside += int(((restored < 0) | (restored > 1)).sum())
                total += restored.numel()
                yield image_id, restored.clamp(0.0, 1.0).cpu().numpy()

        write_images(out_path, {"output": outputs()}, {"task": spec["task"], "loss": spec["loss"], "seed": spec["seed"]})
        log.info("%.2f%% of output values were outside [0, 1] and were clamped", 100.0 * outside / max(total, 1))
        return len(valset.ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.infer", description="Run a trained model on a validation set.")
    parser.add_argument("model", help="model.pt written by lossbench.train")
    parser.add_argument("valset", help="validation set .h5")
    parser.add_argument("out", help="output .h5 (group 'output')")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    count = run(args.model, args.valset, args.out, args.device)
    print(f"wrote {count} images to {args.out}")


if __name__ == "__main__":
    main()
