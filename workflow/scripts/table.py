"""Snakemake adapter: one thesis table from per-image metric files."""

from pathlib import Path

from lossbench.logs import log_to
from lossbench.tables import build_table, write_all

with log_to(snakemake.log[0]):
    table = build_table(snakemake.wildcards.table, snakemake.input.inputs, snakemake.params.models)
    for path in write_all(table, Path(snakemake.output.csv).with_suffix("")):
        print(f"wrote {path}")
