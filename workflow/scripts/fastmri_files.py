"""Snakemake adapter: check every fastMRI volume of a folder and link the selected ones."""

from lossbench.data.fastmri_files import link_checked
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    params = snakemake.params
    files = link_checked(
        snakemake.input[0],
        snakemake.output[0],
        params.challenge,
        params.crop,
        params.subset,
        params.seed,
        params.skip_bad,
    )
    print(f"{len(files)} checked {params.challenge} volumes linked in {snakemake.output[0]}")
