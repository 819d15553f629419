"""Snakemake adapter: the variance decomposition and the pairwise comparisons of one thesis table."""

from pathlib import Path

from lossbench import losses
from lossbench.logs import log_to
from lossbench.losses import label as loss_label
from lossbench.statistics import write_pairs, write_variance
from lossbench.tables import table_title

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    params = snakemake.params
    prefix = Path(snakemake.output.variance_csv).with_name(params.table)
    title = table_title(params.table)
    for path in write_variance(title, params.models, prefix) + write_pairs(title, params.models, prefix, lambda loss: loss_label(loss, params.lpips_pretrained)):
        print(f"wrote {path}")
