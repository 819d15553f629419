"""Snakemake adapter: the compute budget of the configured run."""

from lossbench import losses
from lossbench.core.logs import log_to
from lossbench.pipeline.budget import write_budget

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    print(write_budget(snakemake.params.config, snakemake.output[0], snakemake.params.source).read_text())
