"""Snakemake adapter: the experiment's record of its LPIPS trunk, fetching the pretrained trunk into the user's cache
when a run planned with it finds none."""

import json
from pathlib import Path

from lossbench.data.download import sha256_file
from lossbench.metrics.lpips import UNTRAINED_SEED, trunk_label
from lossbench.metrics.lpips_weights import find_trunk
from lossbench.pipeline.job import workflow_job

params = snakemake.params
with workflow_job(snakemake):
    pretrained = params.trunk == "pretrained"
    record = {"trunk": params.trunk, "label": trunk_label(pretrained)}
    if pretrained:
        # Found, or fetched once under the cache's lock; offline without a cache a one-line error says what to put
        # where.
        path = find_trunk(params.weights)
        record.update(path=str(path), sha256=sha256_file(path))
    else:
        record["seed"] = UNTRAINED_SEED
    Path(snakemake.output[0]).write_text(json.dumps(record, indent=2) + "\n")
