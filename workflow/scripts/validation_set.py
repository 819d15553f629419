"""Snakemake adapter: write a task's validation set (degraded inputs and references)."""

from lossbench.data.tasks import write_valset
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    count = write_valset(
        snakemake.params.kind, snakemake.params.data, snakemake.input[0], snakemake.output[0], snakemake.params.seed
    )
    print(f"wrote {count} validation images to {snakemake.output[0]}")
