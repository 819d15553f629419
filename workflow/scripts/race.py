"""Snakemake adapter: the own-metric race of one task, every configured metric at every validation, a line per loss."""

from lossbench import losses, metrics
from lossbench.core.logs import log_to
from lossbench.report.figures import race_figure

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    metrics.register_config(snakemake.config)  # the configuration's own metrics (own_metrics.<name>)
    params = snakemake.params
    curves = dict(zip(params.losses, snakemake.input.curves, strict=True))
    scored = "every validation image" if params.val_images is None else f"the first {params.val_images} validation images"
    title = f"Own-metric race: {snakemake.wildcards.task}, each metric during training (seed {params.seed}; validation on {scored})"
    race_figure(curves, [snakemake.output.png, snakemake.output.pdf], title, metrics.rows(snakemake.config["metrics"]), losses.own_metrics(), params.lpips_pretrained, snakemake.input.inputs, params.val_images)
