"""Snakemake adapter: restore a validation set with a trained model."""

from lossbench import infer
from lossbench.core.logs import log_to

with log_to(snakemake.log[0]):
    infer.run(snakemake.input.model, snakemake.input.valset, snakemake.output[0], snakemake.params.device, snakemake.threads)
