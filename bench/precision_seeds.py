"""Does bfloat16 cost accuracy? Every demo training in float32 NCHW and in bfloat16 NHWC, 3 seeds.

    python bench/precision_seeds.py --data results/demo/data [--seeds 0 1 2] [--report bench/precision_seeds.json]

Trains each (task, loss, seed) of config.yaml on the demo's data (``make demo`` makes it) twice: with
``trainer.autocast: none, channels_last: false`` (float32 in NCHW, the numerics before issue 31) and with
``autocast: bfloat16, channels_last: true`` (the fastest step on a CPU with native bfloat16), two trainings at a
time, one thread each. Per task and loss it reports the final validation PSNR of every seed
in both, the change of the mean, and the seeds' spread (range and standard deviation) in float32: the new
numerics cost nothing measurable where the change stays within that spread. Takes about 1.5 hours on a
2-core machine; run by hand (``bench/run_all.py`` leaves it out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import torch

from lossbench.core.io import read_rows
from lossbench.pipeline.config import load
from lossbench.pipeline.job_settings import evaluation_settings, run_settings, validation_metrics
from lossbench.registry import PACKAGE
from lossbench.train import loop as training

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("float32_nchw", "bfloat16_nhwc")


def _train(job: tuple[str, str, int, str, str, str]) -> tuple[str, str, int, str, dict[str, float], float]:
    """One training; (task, loss, seed, variant, final validation PSNR and own metric, seconds)."""
    config_path, data, seed, task, loss, variant = job[0], Path(job[1]), job[2], job[3], job[4], job[5]
    torch.set_num_threads(1)
    config = load(config_path, require_data=False)
    settings = run_settings(config, task, loss, seed)
    fast = variant == "bfloat16_nhwc"
    trainer = replace(settings.trainer, autocast="bfloat16" if fast else "none", channels_last=fast)
    settings = replace(settings, trainer=trainer)
    train = data / task / ("train_images" if (data / task / "train_images").is_dir() else "synthetic_train")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        training.run(
            settings,
            train,
            data / task / "val.h5",
            Path(folder) / "model",
            Path(folder) / "checkpoints",
            device="cpu",
            threads=1,
            progress=False,
            checkpoint_every=10**9,
            metrics=validation_metrics(config, task, evaluation_settings(config)),
            finite_check_every=config["trainer"]["finite_check_every"],
        )
        last = read_rows(Path(folder) / "model" / "curve.csv")[-1]
    own = PACKAGE.loss(loss).own_metric
    values = {"psnr": float(last["val_psnr"])}
    if own is not None and last.get(f"val_{own}"):
        values[own] = float(last[f"val_{own}"])
    return task, loss, seed, variant, values, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--data", required=True, help="the demo's data folder (results/demo/data)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--report", default="bench/precision_seeds.json")
    args = parser.parse_args()
    config = load(args.config, require_data=False)
    jobs = [
        (args.config, args.data, seed, task, loss, variant)
        for seed in args.seeds
        for task in config["tasks"]
        for loss in config["losses"]
        for variant in VARIANTS
    ]
    finals: dict[tuple[str, str, str], dict[int, dict[str, float]]] = {}
    seconds = dict.fromkeys(VARIANTS, 0.0)
    with ProcessPoolExecutor(args.jobs) as pool:
        for task, loss, seed, variant, values, spent in pool.map(_train, jobs):
            finals.setdefault((task, loss, variant), {})[seed] = values
            seconds[variant] += spent
            print(f"{task}/{loss} seed {seed} {variant}: {values} in {spent:.0f} s", flush=True)
    rows = {}
    for task in config["tasks"]:
        for loss in config["losses"]:
            by_variant = {variant: finals[(task, loss, variant)] for variant in VARIANTS}
            rows[f"{task}/{loss}"] = {
                metric: _compare(
                    {
                        variant: {seed: values[metric] for seed, values in by_seed.items()}
                        for variant, by_seed in by_variant.items()
                    }
                )
                for metric in by_variant["float32_nchw"][args.seeds[0]]
            }
    report = {"seeds": args.seeds, "training_seconds": seconds, "results": rows}
    Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    changes = [row for metrics in rows.values() for row in metrics.values()]
    inside = sum(row["within_seed_range"] for row in changes)
    print(f"{inside} of {len(changes)} changes within the float32 seeds' range; wrote {args.report}")


def _compare(values: dict[str, dict[int, float]]) -> dict:
    """One metric's values per variant and seed, the change of the mean and the float32 seeds' spread."""
    base, new = values["float32_nchw"], values["bfloat16_nhwc"]
    change = statistics.fmean(new.values()) - statistics.fmean(base.values())
    spread = max(base.values()) - min(base.values())
    return {
        **values,
        "mean_change": change,
        "seed_range": spread,
        "seed_sd": statistics.stdev(base.values()) if len(base) > 1 else None,
        "within_seed_range": abs(change) <= spread,
    }


if __name__ == "__main__":
    main()
