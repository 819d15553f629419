"""Snakemake adapter: restore a validation set with a trained model."""

from lossbench import infer
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    infer.run(
        snakemake.input.model, snakemake.input.valset, snakemake.output[0], snakemake.params.device, snakemake.threads
    )
