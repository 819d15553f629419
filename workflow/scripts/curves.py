"""Snakemake adapter: the training curves of every loss on one task, in one figure."""

from lossbench import losses
from lossbench.figures import curves_figure
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    params = snakemake.params
    curves = dict(zip(params.losses, snakemake.input.curves, strict=True))
    title = f"Training curves: {snakemake.wildcards.task}, every loss (seed {params.seed})"
    curves_figure(curves, [snakemake.output.png, snakemake.output.pdf], title, params.lpips_pretrained, snakemake.input.inputs)
