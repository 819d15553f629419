"""Snakemake adapter: decode every image of a user folder before a data rule reads it."""

import sys

from lossbench.data.checks import check_image_folder, checked_files, run_check

failure = run_check(
    lambda: checked_files(*check_image_folder(snakemake.input[0]), snakemake.output[0]), snakemake.log[0]
)
if failure:
    sys.exit(failure)
