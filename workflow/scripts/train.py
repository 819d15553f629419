"""Snakemake adapter: train one model (task, loss, seed), resuming from its checkpoints."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.pipeline.job_settings import evaluation_settings, live_settings, validation_metrics
from lossbench.train import loop as training
from lossbench.train.run_settings import RunSettings

# A `folder` source's training input is the list of its one folder (common.smk's existing()), the others a path.
TRAIN = snakemake.input.train if isinstance(snakemake.input.train, str) else snakemake.input.train[0]

with workflow_job(snakemake) as job:
    training.run(
        RunSettings.from_dict(snakemake.params.settings),
        TRAIN,
        snakemake.input.valset,
        Path(snakemake.output.model).parent,
        snakemake.params.checkpoints,
        device=snakemake.params.device,
        threads=snakemake.threads,
        # Read from the config rather than params: a new interval or live view must not rerun finished models.
        checkpoint_every=snakemake.config["trainer"]["checkpoint_every"],
        live=live_settings(snakemake.config),
        # Like the live view, scored without rerunning a finished model when the configured metrics change.
        metrics=validation_metrics(
            snakemake.config, snakemake.wildcards.task, evaluation_settings(snakemake.config), job.registry
        ),
        registry=job.registry,
        finite_check_every=snakemake.config["trainer"]["finite_check_every"],
    )
