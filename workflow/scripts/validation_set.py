"""Snakemake adapter: write a task's validation set (degraded inputs and references)."""

from lossbench.core.logs import log_to
from lossbench.data.tasks import write_valset

with log_to(snakemake.log[0]):
    count = write_valset(snakemake.params.kind, snakemake.params.data, snakemake.input[0], snakemake.output[0], snakemake.params.seed)
    print(f"wrote {count} validation images to {snakemake.output[0]}")
