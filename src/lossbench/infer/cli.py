"""``python -m lossbench.infer``: the command line of :func:`lossbench.infer.folder.restore_folder`."""

from __future__ import annotations

import argparse
import logging
import sys

import numpy as np
from PIL import Image

from lossbench.infer.common import OutputWriteError
from lossbench.infer.folder import restore_folder
from lossbench.infer.images import DEFAULT_MAX_PIXELS
from lossbench.train.device import DeviceError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.infer",
        description="Run a trained model on a folder of images (denoising) or of fastMRI .h5 files (MRI).",
    )
    parser.add_argument(
        "--model",
        required=True,
        help="model.pt written by lossbench.train, e.g. results/demo/models/denoise/l1/seed0/model.pt",
    )
    parser.add_argument(
        "--input",
        required=True,
        help=(
            "folder of images (denoising) or of fastMRI .h5 files: train/val files get the task's mask, test files"
            " their own"
        ),
    )
    parser.add_argument(
        "--out",
        required=True,
        help=(
            "output folder, apart from the input folder (neither inside the other): PNGs, or fastMRI submission files"
            " (dataset 'reconstruction')"
        ),
    )
    parser.add_argument(
        "--sigma",
        type=float,
        default=None,
        help="denoising: add Gaussian noise of SIGMA/255 (seeded) first; default: none",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the --sigma noise (default 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help=(
            "replace existing outputs that this model did not write from these inputs and settings (those it did are"
            " kept: a rerun resumes)"
        ),
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=(
            "denoising: largest width x height of an input image, checked before decoding (default"
            f" {DEFAULT_MAX_PIXELS})"
        ),
    )
    return parser


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.sigma is not None and not (np.isfinite(args.sigma) and args.sigma >= 0):
        parser.error(f"--sigma {args.sigma} must be a finite number >= 0")
    if args.max_pixels < 1:
        parser.error(f"--max-pixels {args.max_pixels} must be a positive number of pixels")
    if Image.MAX_IMAGE_PIXELS is not None and args.max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = args.max_pixels  # PIL's bomb check would refuse what the user allowed
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        written = restore_folder(
            args.model, args.input, args.out, args.sigma, args.seed, args.overwrite, args.device, args.max_pixels
        )
    except (ValueError, FileNotFoundError, FileExistsError, OutputWriteError, DeviceError) as error:
        sys.exit(f"error: {error}")
    print(f"wrote {len(written)} files to {args.out}")
