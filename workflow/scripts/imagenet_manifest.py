"""Snakemake adapter: draw the training subset into a candidate manifest; report the skipped images.

The report is a log of the rule, so it survives a failure that points at it; the manifest the
training reads is replaced by rule imagenet_manifest only once this check has passed.
"""

import sys

from lossbench.data.checks import run_check
from lossbench.data.imagenet import write_manifest

params = snakemake.params


def check():
    write_manifest(
        snakemake.input[0], snakemake.output[0], snakemake.log.report, params.images, params.seed, params.min_side
    )
    return []


failure = run_check(check, snakemake.log.log)
if failure:
    sys.exit(failure)
