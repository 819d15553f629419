"""Write the saved actively sampled answer sets that pwcmp_reference.m scales (tests/data/active_answers_*.csv).

    PYTHONPATH=src python tests/data/pwcmp_octave/make_active_answers.py

One simulated study per set, by the app's active design (lossbench.userstudy.simulation.simulate, "active"), from
true scores as bench/userstudy_sampling.py draws them: the thesis's denoising JODs (pwcmp scaling of the shipped
counts) for 6 conditions, and for 18 those JODs with each of 3 seeds' models off its loss by N(0, 0.3²) JOD.
Seeded, so the files are reproduced exactly. The budgets are far below a full design's: 420 comparisons for 153
pairs and 60 for 15, so the active design asks some pairs often and many rarely or never. active_answers_18_early
is the same 18-condition study after its first 12 comparisons: a comparison graph in several disconnected parts
with never-compared conditions, which pwcmp joins by ties between the parts' best conditions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossbench.userstudy import scale
from lossbench.userstudy.counts import THESIS_STUDIES, read_counts, write_counts
from lossbench.userstudy.simulation import simulate

HERE = Path(__file__).resolve().parent
#: Name → (conditions per loss, comparisons); "_early" sets are the first comparisons of the set before them.
SETS = {"active_answers_6": (1, 60), "active_answers_18": (3, 420), "active_answers_18_early": (3, 12)}
SEED = 30  # the number
SEED_SD = 0.3


def main() -> None:
    losses, thesis = read_counts(THESIS_STUDIES["denoise"].path)
    jod = scale(thesis)
    for index, seeds in enumerate((1, 3)):
        rng = np.random.default_rng([SEED, index])
        conditions = losses if seeds == 1 else [f"{loss}_seed{s}" for loss in losses for s in range(seeds)]
        truth = jod if seeds == 1 else np.repeat(jod, seeds) + rng.normal(0.0, SEED_SD, len(conditions))
        names = [name for name, (per_loss, _) in SETS.items() if per_loss == seeds]
        budgets = sorted(SETS[name][1] for name in names)
        recorded = dict(zip(budgets, simulate("active", truth, budgets, rng)))
        for name in names:
            write_counts(conditions, recorded[SETS[name][1]], HERE.parent / f"{name}.csv")


if __name__ == "__main__":
    main()
