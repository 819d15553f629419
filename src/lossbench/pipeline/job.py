"""What every workflow script does first: log to its rule's log file and register the configuration's own losses and
metrics.

A Snakemake job is a process of its own, so the losses and metrics a configuration adds (``losses.<name>.module``,
``own_metrics``) exist in it only once registered there. Every adapter in ``workflow/scripts/`` opens
:func:`workflow_job`, so none can forget to, and a name no registry knows is an error, not a raw label.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from lossbench.core.logs import log_to


def register_config(config: dict[str, Any]) -> None:
    """Register the configuration's own losses and metrics in this process (none: nothing is imported)."""
    own_losses = any("module" in settings for settings in config["losses"].values())
    if not (own_losses or config.get("own_metrics")):
        return
    # Deferred: the registries import torch, which a job that only moves files does not need.
    from lossbench import losses, metrics

    losses.register_config(config)
    metrics.register_config(config)


@contextlib.contextmanager
def workflow_job(snakemake: Any) -> Iterator[None]:
    """The body of a workflow script: logged to ``snakemake.log[0]``, with the configuration's own specs registered.

    An error inside is one line in the log and on the console (:func:`lossbench.core.logs.log_to`).
    """
    with log_to(snakemake.log[0]):
        register_config(snakemake.config)
        yield
