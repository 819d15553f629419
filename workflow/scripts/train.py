"""Snakemake adapter: train one model (task, loss, seed)."""

from pathlib import Path

from lossbench import train
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    train.run(
        snakemake.params.spec,
        snakemake.input.train,
        snakemake.input.valset,
        Path(snakemake.output.model).parent,
        snakemake.params.checkpoints,
        device=snakemake.params.device,
        threads=snakemake.threads,
    )
