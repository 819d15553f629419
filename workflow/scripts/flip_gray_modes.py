"""Snakemake adapter: the grayscale tasks' FLIP rows under each grayscale mode of FLIP."""

from pathlib import Path

import torch

from lossbench.core.io import write_metrics
from lossbench.evaluate import flip_gray_modes, flip_gray_modes_markdown
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake) as job:
    torch.set_num_threads(snakemake.threads)
    rows = flip_gray_modes(snakemake.params.valsets, snakemake.params.outputs, snakemake.params.evaluation)
    write_metrics(snakemake.output.csv, rows)
    Path(snakemake.output.md).write_text(flip_gray_modes_markdown(rows, snakemake.params.input_labels, job.registry))
    print(f"wrote {snakemake.output.csv} and {snakemake.output.md}")
