"""Snakemake adapter: the 24 verified Kodak images, copied from the user's folder or downloaded."""

from lossbench.core.logs import log_to
from lossbench.data.kodak import fetch_kodak

with log_to(snakemake.log[0]):
    paths = fetch_kodak(snakemake.output[0], snakemake.params.url, snakemake.params.local_dir)
    print(f"{len(paths)} verified Kodak images in {snakemake.output[0]}")
