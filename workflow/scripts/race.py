"""Snakemake adapter: the own-metric race of one task, every metric scored at every validation, a line per loss."""

from lossbench.pipeline.job import workflow_job
from lossbench.pipeline.job_settings import validated_metric_names
from lossbench.report.plots import race_figure

with workflow_job(snakemake) as job:
    params = snakemake.params
    curves = dict(zip(params.losses, snakemake.input.curves, strict=True))
    scored = (
        "every validation image" if params.val_images is None else f"the first {params.val_images} validation images"
    )
    title = (
        f"Own-metric race: {snakemake.wildcards.task}, each metric during training (seed {params.seed}; validation on"
        f" {scored})"
    )
    race_figure(
        curves,
        [snakemake.output.png, snakemake.output.pdf],
        title,
        job.registry.metric_rows(validated_metric_names(snakemake.config, job.registry)),
        job.registry.own_metrics(),
        params.lpips_pretrained,
        snakemake.input.inputs,
        params.val_images,
        job.registry,
    )
