"""Snakemake adapter: the compute budget of the configured run."""

from lossbench.pipeline.budget import write_budget
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    print(write_budget(snakemake.params.config, snakemake.output[0], snakemake.params.source).read_text())
