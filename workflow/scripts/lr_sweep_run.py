"""Snakemake adapter: one short training run of the learning-rate sweep; its final validation loss as YAML."""

from pathlib import Path

import yaml

from lossbench.pipeline.job import workflow_job
from lossbench.pipeline.lr_sweep import final_validation_loss
from lossbench.train import loop as training
from lossbench.train.run_settings import RunSettings

# A `folder` source's training input is the list of its one folder (common.smk's existing()), the others a path.
TRAIN = snakemake.input.train if isinstance(snakemake.input.train, str) else snakemake.input.train[0]

with workflow_job(snakemake) as job:
    settings = RunSettings.from_dict(snakemake.params.settings)
    try:
        training.run(
            settings,
            TRAIN,
            snakemake.input.valset,
            snakemake.output.run,
            snakemake.params.checkpoints,
            device=snakemake.params.device,
            threads=snakemake.threads,
            checkpoint_every=snakemake.config["trainer"]["checkpoint_every"],
            registry=job.registry,
        )
        result = {
            "lr": settings.lr,
            "val_loss": final_validation_loss(Path(snakemake.output.run) / "curve.csv"),
            "diverged": None,
        }
    except training.NonFiniteError as error:
        # A rate too high for this loss is a result of the sweep, not a failure of it.
        result = {"lr": settings.lr, "val_loss": None, "diverged": str(error)}
    Path(snakemake.output.result).write_text(yaml.safe_dump(result))
