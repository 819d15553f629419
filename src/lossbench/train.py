"""Training of one U-net with one loss on one task and seed (thesis §5.1), built to survive.

The command line of :func:`lossbench.training.run`: the run spec of (task, loss, seed) of a
configuration (:func:`lossbench.config.train_spec`), trained with resumable checkpoints
(:mod:`lossbench.checkpoint`); every error a user can cause is one line.

CLI:
    python -m lossbench.train --config config.yaml --task denoise --loss l1 --seed 0 \\
        --train-dir results/data/denoise/train --valset results/data/denoise/val.h5 \\
        --out results/models/denoise/l1/seed0
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from lossbench.device import DeviceError
from lossbench.logs import LiveViewError
from lossbench.training import NonFiniteError, run


def main(argv: list[str] | None = None) -> None:
    from lossbench import metrics
    from lossbench.config import evaluation_settings, live_settings, load, train_spec, validation_metrics

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
    spec = train_spec(config, args.task, args.loss, args.seed)
    try:
        metrics.register_config(config)
        scored = validation_metrics(config, args.task, evaluation_settings(config))
        run(spec, args.train_dir, args.valset, args.out, args.checkpoints or Path(args.out) / "checkpoints", args.device or config["device"], config["threads"], not args.no_progress, config["trainer"]["checkpoint_every"], live_settings(config), scored)
    except (NonFiniteError, DeviceError, LiveViewError, ValueError, OSError) as error:
        # Bad data (unreadable, too small, malformed volumes) is reported in one line naming the file.
        sys.exit(f"{args.task}/{args.loss} seed {args.seed}: {error}")


if __name__ == "__main__":
    main()
