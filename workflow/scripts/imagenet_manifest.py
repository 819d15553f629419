"""Snakemake adapter: manifest of a seeded sample of training images, and a report of the skipped ones."""

from lossbench.data.imagenet import write_manifest
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    count = write_manifest(snakemake.input[0], snakemake.output.manifest, snakemake.output.report, params.images, params.seed, params.min_side)
    print(f"wrote {count} images to {snakemake.output.manifest}")
