"""How precisely each design of a pairwise study recovers known JOD scores: full round-robin, random pairs, active.

    python bench/userstudy_sampling.py [--out bench/userstudy_sampling.json] [--studies 100] [--workers 2]
        [--quick] [--figure docs/figures/userstudy_sampling.png]

Simulated observers answer from true scores (Thurstone Case V, 1 JOD = 75 %): the thesis's denoising and MRI JODs
(pwcmp scaling of the shipped counts, 6 conditions), and two 18-condition sets, as a study of 6 losses × 3 seeds
would have: the denoising losses' JODs with each seed's model off its loss by N(0, 0.3²) JOD (drawn anew per
study, a range of about 2 JOD), and 18 scores spread evenly over 3 and over 6 JOD (studies of more strongly
differing conditions). Every design gets the
thesis's denoising budget, 1680 comparisons (14 observers × 120), rounded to whole rounds of the full design. At
each checkpoint the counts are scaled as the analysis scales them (pwcmp's ``pw_scale``: Gaussian distance prior,
mean 0), and the RMSE (both centred) and Kendall τ-b against the truth are recorded; means and standard errors over
the simulated studies. ``comparisons_to_full_final`` is how many comparisons a design needs to reach the full
design's final mean RMSE (log-log interpolation between checkpoints; null: not within the budget).

``--quick`` (20 studies, the two 6-condition sets and the seeds set) takes a few minutes on 2 cores; the full
setting's runtime is in the JSON (``seconds``) and in docs/userstudy.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from lossbench.userstudy.counts import THESIS_STUDIES, read_counts
from lossbench.userstudy.simulation import DESIGNS, kendall, rmse, simulate
from lossbench.userstudy.thurstone import scale, scale_many

#: The thesis's denoising study: 14 observers × 120 comparisons.
BUDGET = 1680
#: Checkpoints as fractions of the budget.
FRACTIONS = (1 / 8, 1 / 4, 3 / 8, 1 / 2, 5 / 8, 3 / 4, 1)
#: Spread of a seed's model around its loss's JOD, JOD.
SEED_SD = 0.3
#: Range of the evenly spread 18-condition set, JOD.
WIDE_RANGE = 6.0
QUICK_STUDIES = 20
QUICK_SETS = ("denoise_6", "mri_6", "denoise_seeds_18")


def _thesis_jod(task: str) -> np.ndarray:
    return scale(read_counts(THESIS_STUDIES[task].path)[1])


def truth(name: str, rng: np.random.Generator) -> np.ndarray:
    """True JOD scores of one simulated study of the set ``name`` (see the module's docstring)."""
    if name == "denoise_6":
        return _thesis_jod("denoise")
    if name == "mri_6":
        return _thesis_jod("mri")
    if name == "denoise_seeds_18":
        return np.repeat(_thesis_jod("denoise"), 3) + rng.normal(0.0, SEED_SD, 18)
    if name == "spread3_18":
        return np.linspace(0.0, WIDE_RANGE / 2, 18)
    if name == "spread6_18":
        return np.linspace(0.0, WIDE_RANGE, 18)
    raise ValueError(f"set: unknown {name!r}")


SETS = ("denoise_6", "mri_6", "denoise_seeds_18", "spread3_18", "spread6_18")


def checkpoints(n: int) -> list[int]:
    """Comparisons at which a study of ``n`` conditions is scaled: :data:`FRACTIONS` of the budget in whole rounds."""
    pairs = n * (n - 1) // 2
    total = pairs * max(1, round(BUDGET / pairs))
    return sorted({max(1, round(fraction * total)) for fraction in FRACTIONS})


def one_study(name: str, index: int, seed: int) -> dict[str, np.ndarray]:
    """RMSE and τ at every checkpoint of each design, for study ``index`` of set ``name``.

    Every design of a study sees the same true scores; each has its own generator.
    """
    set_index = SETS.index(name)
    scores = truth(name, np.random.default_rng([seed, set_index, index]))
    marks = checkpoints(len(scores))
    result = {}
    for design_index, design in enumerate(DESIGNS):
        counts = simulate(design, scores, marks, np.random.default_rng([seed, set_index, index, 1 + design_index]))
        scaled = scale_many(counts)
        result[f"{design}_rmse"] = np.array([rmse(row, scores) for row in scaled])
        result[f"{design}_tau"] = np.array([kendall(row, scores) for row in scaled])
    return result


def _to_reach(marks: list[int], curve: np.ndarray, target: float) -> float | None:
    """Comparisons at which ``curve`` (mean RMSE at ``marks``) first falls to ``target``, interpolated in log-log."""
    if curve[0] <= target:
        return float(marks[0])
    for k in range(1, len(marks)):
        if curve[k] <= target:
            x0, x1, y0, y1 = np.log([marks[k - 1], marks[k], curve[k - 1], curve[k]])
            return float(np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0)))
    return None


def summarise(name: str, studies: list[dict[str, np.ndarray]]) -> dict:
    """Means and standard errors over ``studies`` of one set, and the comparisons each design needs."""
    n = len(truth(name, np.random.default_rng(0)))
    marks = checkpoints(n)
    designs = {}
    for design in DESIGNS:
        entry = {"comparisons": marks}
        for measure in ("rmse", "tau"):
            values = np.stack([study[f"{design}_{measure}"] for study in studies])
            entry[measure] = values.mean(axis=0).tolist()
            entry[f"{measure}_se"] = (values.std(axis=0, ddof=1) / np.sqrt(len(values))).tolist()
        designs[design] = entry
    target = designs["full"]["rmse"][-1]
    for design in DESIGNS:
        reach = _to_reach(marks, np.array(designs[design]["rmse"]), target)
        designs[design]["comparisons_to_full_final"] = reach
        designs[design]["share_of_full"] = None if reach is None else reach / marks[-1]
    return {"conditions": n, "pairs": n * (n - 1) // 2, "studies": len(studies), "designs": designs}


def figure(report: dict, path: Path) -> None:
    """RMSE and Kendall τ against the number of comparisons, one column per set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from lossbench.core.io import save_figure

    sets = report["sets"]
    fig, axes = plt.subplots(2, len(sets), figsize=(3.2 * len(sets), 5.6), squeeze=False)
    for column, (name, entry) in enumerate(sets.items()):
        for design, style in zip(DESIGNS, ("o-", "s--", "^-")):
            data = entry["designs"][design]
            for row, measure in enumerate(("rmse", "tau")):
                mean, se = np.array(data[measure]), np.array(data[f"{measure}_se"])
                axes[row, column].plot(data["comparisons"], mean, style, label=design, markersize=4)
                axes[row, column].fill_between(data["comparisons"], mean - 2 * se, mean + 2 * se, alpha=0.2)
        axes[0, column].set_title(f"{name} ({entry['studies']} studies)", fontsize=9)
        axes[0, column].set_yscale("log")
        axes[1, column].set_xlabel("comparisons")
    axes[0, 0].set_ylabel("RMSE of JOD")
    axes[1, 0].set_ylabel("Kendall τ-b")
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, [path])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="JSON file for the results")
    parser.add_argument("--studies", type=int, help="simulated studies per set (default 100; --quick: 20)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_STUDIES} studies of {', '.join(QUICK_SETS)}")
    parser.add_argument("--figure", type=Path, help="PNG of RMSE and τ against the comparisons")
    args = parser.parse_args()
    studies = args.studies or (QUICK_STUDIES if args.quick else 100)
    if studies < 2:
        parser.error(f"--studies: expected at least 2 (standard errors), got {studies}")
    sets = QUICK_SETS if args.quick else SETS
    started = time.perf_counter()
    jobs = [(name, index) for name in sets for index in range(studies)]
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(one_study, *zip(*jobs), [args.seed] * len(jobs), chunksize=4))
    report = {
        "budget": BUDGET,
        "studies": studies,
        "quick": args.quick,
        "seed": args.seed,
        "workers": args.workers,
        "seed_sd": SEED_SD,
        "wide_range": WIDE_RANGE,
        "sets": {
            name: summarise(name, [result for (set_name, _), result in zip(jobs, results) if set_name == name])
            for name in sets
        },
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    report["seconds"] = time.perf_counter() - started
    for name, entry in report["sets"].items():
        full = entry["designs"]["full"]
        print(f"{name}: full design's final RMSE {full['rmse'][-1]:.4f} after {full['comparisons'][-1]} comparisons")
        for design in DESIGNS:
            data = entry["designs"][design]
            reach = data["comparisons_to_full_final"]
            needs = "not reached" if reach is None else f"reached after {reach:.0f} ({data['share_of_full']:.0%})"
            print(f"  {design:>6}: RMSE {data['rmse'][-1]:.4f}, τ {data['tau'][-1]:.3f}; full's final RMSE {needs}")
    print(f"{studies} studies per set in {report['seconds']:.0f} s on {args.workers} workers")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    if args.figure:
        figure(report, args.figure)


if __name__ == "__main__":
    main()
