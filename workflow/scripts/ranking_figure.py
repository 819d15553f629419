"""Snakemake adapter: the ranking figure of one task's models."""

from lossbench.data import tasks
from lossbench.pipeline.job import workflow_job
from lossbench.report.plots import ranking_figure

with workflow_job(snakemake) as job:
    ranking_figure(
        snakemake.params.models,
        [snakemake.output.png, snakemake.output.pdf],
        f"Ranking of the {snakemake.wildcards.task} models per metric",
        snakemake.params.lpips_pretrained,
        job.registry.metric_rows(snakemake.config["metrics"]),
        tasks.spec(snakemake.params.kind).unit,
        job.registry,
    )
