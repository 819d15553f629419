"""Snakemake adapter: a comparison figure or its zoomed crop."""

from lossbench.figures import comparison_figure, load_panels
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    outputs = dict(zip(params.losses, snakemake.input.outputs))
    panels = load_panels(snakemake.input.valset, outputs, params.spec["image"], params.lpips_pretrained)
    kind = "Zoomed-in crop of " + params.panel.replace("fig_", "Fig. ").replace("_", ".") if params.crop else "Input, reference and outputs"
    title = f"{kind}: {params.spec['task']} validation image {params.spec['image']} (seed {params.seed})"
    comparison_figure(panels, [snakemake.output.png, snakemake.output.pdf], title, params.spec.get("box"), crop=params.crop)
