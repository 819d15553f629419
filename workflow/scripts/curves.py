"""Snakemake adapter: the training curves of every loss on one task, in one figure."""

from lossbench.pipeline.job import workflow_job
from lossbench.report.plots import curves_figure

with workflow_job(snakemake) as job:
    params = snakemake.params
    curves = dict(zip(params.losses, snakemake.input.curves, strict=True))
    scored = (
        "every validation image" if params.val_images is None else f"the first {params.val_images} validation images"
    )
    title = f"Training curves: {snakemake.wildcards.task}, every loss (seed {params.seed}; validation on {scored})"
    curves_figure(
        curves,
        [snakemake.output.png, snakemake.output.pdf],
        title,
        params.lpips_pretrained,
        snakemake.input.inputs,
        params.val_images,
        job.registry,
    )
