"""Snakemake adapter: write synthetic volumes in the fastMRI HDF5 format."""

from lossbench.data.fastmri_synthetic import generate_dataset
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    params = snakemake.params
    # The realistic preset draws each volume's slice count (16-40), capped at the split's slices.
    files = generate_dataset(
        snakemake.output[0],
        params.challenge,
        params.volumes,
        params.slices,
        params.seed,
        prefix=params.prefix,
        matrix=params.matrix,
        preset=params.preset,
    )
    print(f"wrote {len(files)} {params.challenge} volumes to {snakemake.output[0]}")
