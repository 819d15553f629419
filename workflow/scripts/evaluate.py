"""Snakemake adapter: per-image metrics (or fastMRI's per-volume ones) of a model's outputs or of the degraded inputs."""

import torch

from lossbench import metrics
from lossbench.core.logs import log_to
from lossbench.evaluate import evaluate, fastmri_volume_metrics, write_csv

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    metrics.register_config(snakemake.config)  # the configuration's own metrics (own_metrics.<name>)
    outputs = snakemake.input.get("outputs")
    if snakemake.params.suite == "fastmri":
        rows = fastmri_volume_metrics(snakemake.input.valset, outputs)
    else:
        rows = evaluate(snakemake.input.valset, outputs, snakemake.params.metrics, snakemake.params.evaluation)
    write_csv(rows, snakemake.output[0])
