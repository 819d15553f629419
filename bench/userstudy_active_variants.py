"""Why the active design stretches the scale early at 18 conditions: variants of the sampler, simulated as in
``bench/userstudy_sampling.py`` (same true scores, budget, observers and scaling), that only this script runs.

    python bench/userstudy_active_variants.py VARIANT[,VARIANT...] [--studies 20] [--sets denoise_seeds_18,...]

Variants (``:pS`` after a belief-based one sets the prior SD to S JOD; default 2):

- ``full``, ``random``: the designs of :func:`lossbench.userstudy.simulation.simulate`; ``active``: its active design
  (the online, assumed-density-filtering belief and the pair of largest expected information gain), step by step.
- ``laplace``: the same choice from the Laplace posterior of all counts, refitted after every answer (as the app).
- ``refitK``: the online belief, replaced by the Laplace posterior every K answers.
- ``warmK``: K rounds of the full design first (the belief takes their answers in), then ``active``.
- ``mst``: ASAP's batch mode: each round a minimum spanning tree of the conditions with edge weights 1 / gain
  (conditions shuffled first, so that ties fall at random), its N − 1 pairs asked in random order.
- ``softK``: a pair drawn with probability ∝ gain^K (K = 0 would be the random design, K → ∞ ``active``).

Printed per set and variant: mean RMSE (± standard error) of the scaled JOD at 1/8, 1/4, 1/2 and all of the budget,
the mean ratio of the scaled scores' SD to the truth's, the distinct pairs asked by 1/8 of the budget, and for
``active`` the ratio of the online belief's mean variance to the Laplace posterior's of the same counts.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.sparse.csgraph import minimum_spanning_tree
from userstudy_sampling import BUDGET, SETS, truth

from lossbench.userstudy.active import PRIOR_SD, Posterior, pairs
from lossbench.userstudy.simulation import answer, rmse, simulate
from lossbench.userstudy.thurstone import scale_many

FRACTIONS = (1 / 8, 1 / 4, 1 / 2, 1)


def marks_of(n: int) -> list[int]:
    """:data:`FRACTIONS` of the budget in whole rounds of the full design, as the benchmark's checkpoints."""
    per_round = n * (n - 1) // 2
    total = per_round * max(1, round(BUDGET / per_round))
    return [max(1, round(fraction * total)) for fraction in FRACTIONS]


def tree_round(belief: Posterior, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The pairs of a minimum spanning tree with weights 1 / gain, in random order (ASAP's batch)."""
    n = len(belief.mean)
    shuffle = rng.permutation(n)
    position = np.argsort(shuffle)
    all_pairs = pairs(n)
    weights = np.zeros((n, n))
    weights[position[all_pairs[:, 0]], position[all_pairs[:, 1]]] = 1.0 / np.maximum(belief.information_gain(), 1e-300)
    tree = minimum_spanning_tree(weights).tocoo()
    batch = [(int(shuffle[a]), int(shuffle[b])) for a, b in zip(tree.row, tree.col)]
    return [batch[k] for k in rng.permutation(len(batch))]


def run(variant: str, scores: np.ndarray, marks: list[int], rng: np.random.Generator, ratios: list) -> np.ndarray:
    """(len(marks), N, N) cumulative counts of one simulated study of ``variant``."""
    variant, _, prior = variant.partition(":p")
    prior_sd = float(prior) if prior else PRIOR_SD
    if variant in ("full", "random"):
        return simulate(variant, scores, marks, rng)
    n = len(scores)
    all_pairs = pairs(n)
    counts = np.zeros((n, n))
    belief = Posterior.prior(n, prior_sd)
    queue: list = []
    recorded = []
    number = int("".join(filter(str.isdigit, variant)) or 0)
    for step in range(marks[-1]):
        if variant.startswith("warm") and step < number * len(all_pairs):
            if not queue:
                queue = [tuple(all_pairs[k]) for k in rng.permutation(len(all_pairs))]
            i, j = queue.pop()
        elif variant == "mst":
            if not queue:
                queue = tree_round(belief, rng)
            i, j = queue.pop()
        elif variant.startswith("soft"):
            weight = belief.information_gain() ** float(variant[4:])
            i, j = all_pairs[rng.choice(len(all_pairs), p=weight / weight.sum())]
        else:
            i, j = belief.choose(rng)
        chosen, other = (i, j) if answer(rng, scores, i, j) else (j, i)
        counts[chosen, other] += 1
        if variant == "laplace" or (variant.startswith("refit") and (step + 1) % number == 0):
            belief = Posterior.from_counts(counts, prior_sd)
        else:
            belief.update(chosen, other)
        if step + 1 in marks:
            recorded.append(counts.copy())
            if variant == "active":
                laplace = Posterior.from_counts(counts, prior_sd)
                ratios.append(np.mean(np.diag(belief.covariance)) / np.mean(np.diag(laplace.covariance)))
    return np.stack(recorded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variants", help="comma-separated, see the module's docstring")
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--sets", default="denoise_seeds_18,denoise_6,mri_6")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for name in args.sets.split(","):
        if name not in SETS:
            parser.error(f"--sets: unknown {name!r}, expected some of {', '.join(SETS)}")
        for variant in args.variants.split(","):
            started = time.perf_counter()
            errors, spreads, asked, ratios = [], [], [], []
            for index in range(args.studies):
                scores = truth(name, np.random.default_rng([args.seed, SETS.index(name), index]))
                marks = marks_of(len(scores))
                rng = np.random.default_rng([args.seed, SETS.index(name), index, 7])
                counts = run(variant, scores, marks, rng, ratios)
                scaled = scale_many(counts)
                errors.append([rmse(row, scores) for row in scaled])
                spreads.append([row.std() / scores.std() for row in scaled])
                asked.append(int((np.triu(counts[0] + counts[0].T, 1) > 0).sum()))
            errors = np.array(errors)
            se = errors.std(axis=0, ddof=1) / np.sqrt(len(errors))
            line = " ".join(f"{m:.3f}±{e:.3f}" for m, e in zip(errors.mean(axis=0), se))
            spread = " ".join(f"{m:.2f}" for m in np.mean(spreads, axis=0))
            extra = ""
            if ratios:
                extra = " | var online/Laplace " + " ".join(
                    f"{m:.3f}" for m in np.reshape(ratios, (args.studies, -1)).mean(axis=0)
                )
            print(
                f"{name} {variant:>10} at {marks}: RMSE {line} | SD/true SD {spread} | pairs by 1/8"
                f" {np.mean(asked):.0f}{extra} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )


if __name__ == "__main__":
    main()
