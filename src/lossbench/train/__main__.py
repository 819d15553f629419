"""``python -m lossbench.train``: one training job from a configuration file, outside the workflow.

It builds the run settings of (task, loss, seed) from the configuration
(:func:`lossbench.pipeline.job_settings.run_settings`) and hands it to the loop, :func:`lossbench.train.loop.run`;
every error a user can cause is one line.

CLI (the folders the demo's workflow writes):
    python -m lossbench.train --config config.yaml --task denoise --loss l1 --seed 0 \\
        --train-dir results/demo/data/denoise/train_images --valset results/demo/data/denoise/val.h5 \\
        --out results/mine/models/denoise/l1/seed0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lossbench.pipeline.config import load
from lossbench.pipeline.job_settings import evaluation_settings, live_settings, run_settings, validation_metrics
from lossbench.registry import Registry
from lossbench.train.device import DeviceError
from lossbench.train.live import LiveViewError
from lossbench.train.loop import NonFiniteError, run


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lossbench.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML configuration (e.g. config.yaml)")
    parser.add_argument("--task", required=True, help="a task of the configuration")
    parser.add_argument("--loss", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-dir", required=True, help="training images or fastMRI .h5 files")
    parser.add_argument("--valset", required=True, help="validation set .h5 (lossbench.data.tasks.write_valset)")
    parser.add_argument("--out", required=True, help="output folder for model.pt and curve.csv")
    parser.add_argument("--checkpoints", help="checkpoint folder (default: OUT/checkpoints)")
    parser.add_argument("--device", default=None, help="auto, cpu or cuda[:N] (default: from config)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load(args.config)
    except ValueError as error:
        sys.exit(f"error: {error}")
    if args.task not in config["tasks"]:
        parser.error(f"task {args.task!r} is not configured in {args.config}")
    if args.loss not in config["losses"]:
        parser.error(f"loss {args.loss!r} is not configured in {args.config}")
    registry = Registry.from_config(config)
    settings = run_settings(config, args.task, args.loss, args.seed, registry)
    try:
        scored = validation_metrics(config, args.task, evaluation_settings(config), registry)
        run(
            settings,
            args.train_dir,
            args.valset,
            args.out,
            args.checkpoints or Path(args.out) / "checkpoints",
            args.device or config["device"],
            config["threads"],
            not args.no_progress,
            config["trainer"]["checkpoint_every"],
            live_settings(config),
            scored,
            registry,
            config["trainer"]["finite_check_every"],
        )
    except (NonFiniteError, DeviceError, LiveViewError, ValueError, OSError) as error:
        # Bad data (unreadable, too small, malformed volumes) is reported in one line naming the file.
        sys.exit(f"{args.task}/{args.loss} seed {args.seed}: {error}")


if __name__ == "__main__":
    main()
