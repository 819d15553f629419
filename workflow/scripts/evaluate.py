"""Snakemake adapter: per-image metrics of a model's outputs, or of the degraded inputs."""

import torch

from lossbench.evaluate import evaluate, write_csv
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    torch.set_num_threads(snakemake.threads)
    outputs = snakemake.input.get("outputs")
    rows = evaluate(snakemake.input.valset, outputs, snakemake.params.metrics, snakemake.params.evaluation)
    write_csv(rows, snakemake.output[0])
