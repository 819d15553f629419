"""Snakemake adapter: one thesis table (or its fastMRI-metrics companion) from per-image metric files."""

from pathlib import Path

from lossbench import losses
from lossbench.logs import log_to
from lossbench.tables import build_table, write_all, write_per_seed

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    params = snakemake.params
    table = build_table(params.table, snakemake.input.inputs, params.models, params.lpips_pretrained, params.suite, params.loss_params)
    for path in write_all(table, Path(snakemake.output.csv).with_suffix(""), with_paper=params.suite == "thesis"):
        print(f"wrote {path}")
    if params.suite == "thesis":
        for path in write_per_seed(params.table, params.models, params.seeds, Path(snakemake.output.csv).with_suffix(""), params.lpips_pretrained):
            print(f"wrote {path}")
