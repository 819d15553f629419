"""Snakemake adapter: check every fastMRI volume of a folder and link the selected ones."""

from lossbench.core.logs import log_to
from lossbench.data.fastmri_files import link_checked

with log_to(snakemake.log[0]):
    params = snakemake.params
    files = link_checked(snakemake.input[0], snakemake.output[0], params.challenge, params.crop, params.subset, params.seed, params.skip_bad)
    print(f"{len(files)} checked {params.challenge} volumes linked in {snakemake.output[0]}")
