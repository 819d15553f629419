"""Snakemake adapter: a comparison figure or its zoomed crop."""

from lossbench.pipeline.job import workflow_job
from lossbench.report.figures import thesis_figure

with workflow_job(snakemake) as job:
    params = snakemake.params
    outputs = dict(zip(params.losses, snakemake.input.outputs))
    thesis_figure(
        snakemake.input.valset,
        outputs,
        params.settings,
        params.panel,
        params.crop,
        params.seed,
        [snakemake.output.png, snakemake.output.pdf],
        params.lpips_pretrained,
        job.registry,
    )
