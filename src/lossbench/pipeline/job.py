"""What every workflow script does first: log to its rule's log file and take its configuration's registry.

A Snakemake job is a process of its own. Every adapter in ``workflow/scripts/`` opens
:func:`workflow_job`, which logs to the rule's log and hands the adapter a :class:`Job`; the
configuration's registry (the package's losses and metrics plus its own, ``losses.<name>.module``
and ``own_metrics``) is ``job.registry``, built once from ``snakemake.config`` and passed explicitly
to whatever labels, builds or computes by name. A name the registry lacks is an error, never a raw label.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lossbench.core.logs import log_to

if TYPE_CHECKING:
    from lossbench.registry import Registry


@dataclass
class Job:
    """One workflow job: its configuration, and the registry built from it on first use.

    Attributes:
        config: ``snakemake.config``, validated by the Snakefile.
    """

    config: dict[str, Any]

    @functools.cached_property
    def registry(self) -> Registry:
        """The configuration's losses and metrics (:meth:`lossbench.registry.Registry.from_config`)."""
        # Deferred: the registry imports torch, which a job that only moves files does not need.
        from lossbench.registry import Registry

        return Registry.from_config(self.config)


@contextlib.contextmanager
def workflow_job(snakemake: Any) -> Iterator[Job]:
    """The body of a workflow script, logged to ``snakemake.log[0]``: ``with workflow_job(snakemake) as job:``.

    An error inside is one line in the log and on the console (:func:`lossbench.core.logs.log_to`).
    """
    with log_to(snakemake.log[0]):
        yield Job(snakemake.config)
