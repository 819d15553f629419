"""Snakemake adapter: the 24 verified Kodak images, copied from the user's folder or downloaded."""

from lossbench.data.kodak import fetch_kodak
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    paths = fetch_kodak(snakemake.output[0], snakemake.params.url, snakemake.params.local_dir)
    print(f"{len(paths)} verified Kodak images in {snakemake.output[0]}")
