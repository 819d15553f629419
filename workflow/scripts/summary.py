"""Snakemake adapter: results/summary.md from the thesis tables' CSVs."""

from pathlib import Path

from lossbench import losses, metrics
from lossbench.logs import log_to
from lossbench.summary import summarise

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    metrics.register_config(snakemake.config)  # the configuration's own metrics (own_metrics.<name>)
    Path(snakemake.output[0]).write_text(summarise(dict(zip(snakemake.params.tables, snakemake.input, strict=True)), snakemake.params.tasks))
