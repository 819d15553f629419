"""Snakemake adapter: the ranking figure of one task's models."""

from lossbench import losses, metrics
from lossbench.core.logs import log_to
from lossbench.data import tasks
from lossbench.report.figures import ranking_figure

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    metrics.register_config(snakemake.config)  # the configuration's own metrics (own_metrics.<name>)
    ranking_figure(snakemake.params.models, [snakemake.output.png, snakemake.output.pdf], f"Ranking of the {snakemake.wildcards.task} models per metric", snakemake.params.lpips_pretrained, metrics.rows(snakemake.config["metrics"]), tasks.spec(snakemake.params.kind).unit)
