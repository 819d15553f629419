"""The collection app's active sampling (``serve --sampling active``): each observer's next trial is the manifest
trial they have not answered whose pair of losses has the largest expected information gain under the belief from
every observer's answers so far (:mod:`lossbench.userstudy.active`).

The belief is the Laplace posterior of the pooled counts (:meth:`Posterior.from_counts`), which depends only on the
counts, not on the order in which observers answered: a restarted server that reads the answer files back takes up
the same belief. A trial once shown to an observer stays their current trial until they answer it, whatever other
observers answer meanwhile, so an answer is never refused because the belief moved. Ties between pairs, between the
images of a pair and the sides are broken by a generator seeded from (seed, study, observer, position): the same
answers give the same trials. The answers go to the same files as in the full design, and the analysis scales them
in the same way (pwcmp's scaling of all answers).
"""

from __future__ import annotations

import threading

import numpy as np

from lossbench.core.seeding import derive_seed
from lossbench.userstudy.active import PRIOR_SD, TIE_TOLERANCE, Posterior
from lossbench.userstudy.stimuli import PlannedTrial


class ActiveSampler:
    """The pooled counts of a study's answers and each observer's current trial, shared by the app's threads.

    Args:
        manifest: The study's manifest (:func:`lossbench.userstudy.stimuli.load_manifest`).
        seed: Seed of the tie-breaking (``userstudy.seed``).
        prior_sd: Prior standard deviation of the scores, JOD.
    """

    def __init__(self, manifest: dict, seed: int, prior_sd: float = PRIOR_SD):
        self.manifest = manifest
        self.seed = seed
        self.prior_sd = prior_sd
        self.conditions = list(manifest["conditions"])
        self.trials = {trial["id"]: trial for trial in manifest["trials"]}
        self.counts = np.zeros((len(self.conditions), len(self.conditions)))
        self.lock = threading.Lock()
        self._current: dict[str, PlannedTrial] = {}

    def record(self, chosen: str, other: str) -> None:
        """Take in one confirmed answer: ``chosen`` preferred to ``other`` (loss names of the manifest)."""
        with self.lock:
            self.counts[self.conditions.index(chosen), self.conditions.index(other)] += 1

    def current(self, observer: str, answered: set[str]) -> PlannedTrial | None:
        """The trial ``observer`` is to answer now, given the trial ids they have answered; None: none is left.

        The trial chosen for them stays theirs until they answer it.
        """
        with self.lock:
            pending = self._current.get(observer)
            if pending is not None and pending.id not in answered:
                return pending
            remaining = [trial for trial_id, trial in self.trials.items() if trial_id not in answered]
            if not remaining:
                self._current.pop(observer, None)
                return None
            chosen = self._choose(observer, remaining, len(answered))
            self._current[observer] = chosen
            return chosen

    def _choose(self, observer: str, remaining: list[dict], position: int) -> PlannedTrial:
        """Among ``remaining`` manifest trials, one of the pair of largest expected information gain."""
        belief = Posterior.from_counts(self.counts, self.prior_sd)
        index = {name: k for k, name in enumerate(self.conditions)}
        pairs = np.array([[index[trial["a"]], index[trial["b"]]] for trial in remaining])
        gain = belief.information_gain(pairs)
        best = np.flatnonzero(gain >= gain.max() * (1.0 - TIE_TOLERANCE))
        rng = np.random.default_rng(derive_seed(self.seed, self.manifest["study"], observer, position))
        trial = remaining[best[rng.integers(len(best))]]
        left, right = (trial["b"], trial["a"]) if rng.integers(2) else (trial["a"], trial["b"])
        return PlannedTrial(trial["id"], trial["image"], left, right)
