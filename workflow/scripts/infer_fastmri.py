"""Snakemake adapter: an MRI model's outputs as fastMRI submission files, one per volume."""

from lossbench import infer
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    # A user's folder source is given as a one-item list (common.smk's `existing`).
    volumes = snakemake.input.volumes if isinstance(snakemake.input.volumes, str) else snakemake.input.volumes[0]
    count = infer.write_fastmri_reconstructions(snakemake.input.outputs, volumes, snakemake.output[0])
    print(f"wrote {count} fastMRI reconstruction files to {snakemake.output[0]}")
