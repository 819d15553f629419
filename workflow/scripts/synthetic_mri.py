"""Snakemake adapter: write synthetic volumes in the fastMRI HDF5 format."""

from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.logs import log_to

with log_to(snakemake.log[0]):
    params = snakemake.params
    files = generate_dataset(snakemake.output[0], params.challenge, params.volumes, params.slices, params.seed, prefix=params.prefix, matrix=params.matrix)
    print(f"wrote {len(files)} {params.challenge} volumes to {snakemake.output[0]}")
