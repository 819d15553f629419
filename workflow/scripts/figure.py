"""Snakemake adapter: a comparison figure or its zoomed crop."""

from lossbench import losses
from lossbench.core.logs import log_to
from lossbench.report.figures import thesis_figure

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    params = snakemake.params
    outputs = dict(zip(params.losses, snakemake.input.outputs))
    thesis_figure(snakemake.input.valset, outputs, params.spec, params.panel, params.crop, params.seed, [snakemake.output.png, snakemake.output.pdf], params.lpips_pretrained)
