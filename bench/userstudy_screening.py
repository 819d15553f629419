"""How often observer screening flags a random-answering observer among careful ones, by simulation.

    python bench/userstudy_screening.py [--out bench/userstudy_screening.json] [--studies 600] [--observers 10]

Each simulated study is the thesis's denoising study: its JODs (pwcmp scaling of the shipped counts), every
observer answering all 15 pairs for 8 images (120 trials), one of them at random. The rates of flagging at
several thresholds (z below −threshold, :mod:`lossbench.userstudy.screening`) are reported: the random observer,
each careful observer, and any careful observer of a study. About 20 s for 600 studies on one core.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np

from lossbench.userstudy.counts import THESIS_STUDIES, read_counts
from lossbench.userstudy.screening import FLAG_Z, screen
from lossbench.userstudy.simulation import observer_counts
from lossbench.userstudy.thurstone import scale

THRESHOLDS = (2.0, FLAG_Z, 3.0)
IMAGES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument("--studies", type=int, default=600)
    parser.add_argument("--observers", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.studies < 1 or args.observers < 3:
        parser.error("--studies: at least 1; --observers: at least 3")
    truth = scale(read_counts(THESIS_STUDIES["denoise"].path)[1])
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    names = [f"o{k}" for k in range(args.observers)]
    z = np.array(
        [
            [fit.z for fit in screen(names, observer_counts(truth, args.observers, IMAGES, rng, random=[0]))]
            for _ in range(args.studies)
        ]
    )
    seconds = time.perf_counter() - started
    rates = {
        f"{threshold:g}": {
            "random_flagged": float(np.mean(z[:, 0] < -threshold)),
            "careful_flagged_each": float(np.mean(z[:, 1:] < -threshold)),
            "careful_flagged_any": float(np.mean(np.any(z[:, 1:] < -threshold, axis=1))),
        }
        for threshold in THRESHOLDS
    }
    for threshold, rate in rates.items():
        print(
            f"z < -{threshold}: random observer flagged in {rate['random_flagged']:.1%} of studies, each careful one in"
            f" {rate['careful_flagged_each']:.1%}, any careful one in {rate['careful_flagged_any']:.1%}"
        )
    print(f"{args.studies} studies of {args.observers} observers in {seconds:.1f} s")
    report = {
        "studies": args.studies,
        "observers": args.observers,
        "trials_per_observer": IMAGES * 15,
        "flag_z": FLAG_Z,
        "rates": rates,
        "z_random_mean": float(z[:, 0].mean()),
        "z_careful_mean": float(z[:, 1:].mean()),
        "z_careful_sd": float(z[:, 1:].std()),
        "seconds": seconds,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
