"""Time of 1000 bootstrap JOD scalings of a 6-condition study (the target is under 5 s).

    python bench/userstudy_bootstrap.py [--out bench/userstudy_bootstrap.json] [--samples 1000] [--repeats 3]

Both of the thesis's studies are bootstrapped over trials (only their totals are published), and a
synthetic 14-observer study over observers; the median over repeats is reported. The samples are
solved as one batch (pwcmp's defaults: Gaussian prior, mean 0). For comparison, the toolbox's
``pw_scale`` in GNU Octave 7.3 took 7.5 s per 100 resamples of the denoising study on the 2-core
development machine (fminunc's default tolerances), i.e. about 75 s for 1000.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

from lossbench.userstudy import bootstrap
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts

TARGET_SECONDS = 5.0


def _observers(totals: np.ndarray, observers: int, seed: int = 0) -> np.ndarray:
    """Split a total count matrix into ``observers`` per-observer matrices, trial by trial at random."""
    rng = np.random.default_rng(seed)
    per_observer = np.zeros((observers, *totals.shape))
    for i, j in zip(*np.nonzero(totals)):
        np.add.at(per_observer[:, i, j], rng.integers(0, observers, int(totals[i, j])), 1)
    return per_observer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = {f"thesis_{key}_trials": read_counts(study.path)[1] for key, study in THESIS_STUDIES.items()}
    cases["thesis_denoise_14_observers"] = _observers(cases["thesis_denoise_trials"], 14)
    results = {}
    for name, counts in cases.items():
        times = []
        for repeat in range(args.repeats):
            started = time.perf_counter()
            bootstrap(counts, n_samples=args.samples, seed=repeat)
            times.append(time.perf_counter() - started)
        results[name] = {"seconds": statistics.median(times), "all_seconds": times}
        print(f"{name}: {args.samples} samples in {results[name]['seconds']:.2f} s (median of {args.repeats})")
    report = {
        "samples": args.samples,
        "conditions": 6,
        "target_seconds": TARGET_SECONDS,
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "results": results,
    }
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
