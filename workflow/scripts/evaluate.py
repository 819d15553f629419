"""Snakemake adapter: per-image metrics (or fastMRI's per-volume ones) of a model's outputs or of the degraded
inputs."""

import torch

from lossbench.core.io import write_metrics
from lossbench.evaluate import evaluate, fastmri_volume_metrics
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake) as job:
    torch.set_num_threads(snakemake.threads)
    outputs = snakemake.input.get("outputs")
    if snakemake.params.suite == "fastmri":
        rows = fastmri_volume_metrics(snakemake.input.valset, outputs)
    else:
        rows = evaluate(
            snakemake.input.valset, outputs, snakemake.params.metrics, snakemake.params.evaluation, job.registry
        )
    write_metrics(snakemake.output[0], rows)
