"""Snakemake adapter: the learning rate per loss with the lowest final validation loss of the sweep."""

import yaml

from lossbench.pipeline.job import workflow_job
from lossbench.pipeline.lr_sweep import write_choice

with workflow_job(snakemake):
    results = {}
    for loss, path in zip(snakemake.params.losses, snakemake.input, strict=True):
        with open(path) as handle:
            run = yaml.safe_load(handle)
        results.setdefault(loss, {})[run["lr"]] = run["val_loss"]
    chosen = write_choice(snakemake.wildcards.task, results, snakemake.output[0])
    print(f"chose {chosen}; point learning_rates_file at {snakemake.output[0]} to train with them")
