"""Snakemake adapter: check the selected fastMRI volumes of a folder (every slice when params.full)."""

import sys

from lossbench.data.checks import checked_files, run_check
from lossbench.data.fastmri_files import check_folder

params = snakemake.params


def check():
    selected, problems = check_folder(
        snakemake.input[0], params.challenge, params.crop, params.full, params.subset, params.seed, params.skip_bad
    )
    return checked_files(selected, problems, snakemake.output[0])


failure = run_check(check, snakemake.log[0])
if failure:
    sys.exit(failure)
