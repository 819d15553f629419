"""Snakemake adapter: download torchvision's AlexNet checkpoint for the pretrained LPIPS trunk."""

from lossbench.data.download import fetch_checkpoint
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    path = fetch_checkpoint(snakemake.params.url, snakemake.output[0])
    print(f"verified {path}")
