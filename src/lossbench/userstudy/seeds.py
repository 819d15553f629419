"""Seeds as conditions (``userstudy.seeds``): which models of each loss a study shows, and how their conditions are
named.

With ``first`` (the default) a study shows one model per loss, that of the first configured seed, and its conditions
are the losses' names, as they always were. With ``all`` it shows every configured seed's model, and a condition is a
(loss, seed) pair named ``<loss>/seed<N>`` (e.g. ``l2/seed1``): the manifest, the app, the answer files and the
scaling treat it as one more label. A loss name never holds a ``/`` (:func:`check_losses`), so no condition of
``all`` can be taken for a loss, and :func:`split` reads every condition back unambiguously.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from lossbench.registry import Registry

#: The values of ``userstudy.seeds``: the first configured seed's model of each loss, or every seed's.
CHOICES = ("first", "all")
#: What an absent ``userstudy.seeds`` means (absent keys stay absent in the recorded configuration).
DEFAULT = "first"
#: The separator between a condition's loss and its seed; never part of a loss name.
SEPARATOR = "/"
_CONDITION = re.compile(r"^(?P<loss>[^/]+)/seed(?P<seed>[0-9]+)$")


def choice(userstudy: dict) -> str:
    """``userstudy.seeds`` of a validated configuration's ``userstudy`` block, :data:`DEFAULT` when absent."""
    return userstudy.get("seeds", DEFAULT)


def condition(loss: str, seed: int) -> str:
    """The condition of ``loss``'s model trained with ``seed``: ``<loss>/seed<seed>``."""
    return f"{loss}{SEPARATOR}seed{seed}"


def split(name: str) -> tuple[str, int | None]:
    """(loss, seed) of a condition: ``("l2", 1)`` for ``l2/seed1``, ``("l2", None)`` for a loss's own name."""
    match = _CONDITION.match(name)
    return (match["loss"], int(match["seed"])) if match else (name, None)


def check_losses(losses: Sequence[str], key: str = "losses") -> None:
    """Refuse a loss name that a (loss, seed) condition could not be told apart from.

    Raises:
        ValueError: one line naming ``key`` and the first loss name holding :data:`SEPARATOR`.
    """
    for loss in losses:
        if SEPARATOR in loss:
            raise ValueError(
                f"{key}: {loss!r} holds {SEPARATOR!r}, which names a study's (loss, seed) conditions"
                " (userstudy.seeds: all); rename the loss"
            )


def conditions(losses: Sequence[str], seeds: Sequence[int], which: str) -> list[str]:
    """The conditions of a study, loss after loss: the losses' names (``first``) or every (loss, seed) (``all``).

    Raises:
        ValueError: ``which`` is none of :data:`CHOICES`.
    """
    if which == "first":
        return list(losses)
    if which == "all":
        return [condition(loss, seed) for loss in losses for seed in seeds]
    raise ValueError(f"userstudy.seeds: expected one of {', '.join(CHOICES)}, got {which!r}")


def members(names: Sequence[str], loss: str) -> list[int]:
    """Indices of ``loss``'s (loss, seed) conditions in ``names`` (empty if it has none, e.g. with one seed)."""
    found = [(index, *split(name)) for index, name in enumerate(names)]
    return [index for index, owner, seed in found if owner == loss and seed is not None]


def seeded(names: Sequence[str]) -> bool:
    """Whether every condition in ``names`` is a (loss, seed), as in a study of every seed's model (``seeds: all``)."""
    return bool(names) and all(split(name)[1] is not None for name in names)


def label(name: str, registry: Registry) -> str:
    """A condition's label in tables and figures: its loss's label, then ``/seed<N>`` for a (loss, seed) condition."""
    loss, seed = split(name)
    return registry.loss_label(loss) + ("" if seed is None else f"{SEPARATOR}seed{seed}")
