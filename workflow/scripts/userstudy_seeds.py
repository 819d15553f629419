"""Snakemake adapter: each loss's JOD over its seeds, the between-seed spread and the between-loss / within-loss ratio
in JOD of one of our studies of every seed's model, and the loss means the metrics are compared with."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.report import read_summary, write_summary
from lossbench.userstudy.seed_spread import loss_summary, write_seed_table

with workflow_job(snakemake) as job:
    out, params = snakemake.output, snakemake.params
    summary = read_summary(Path(snakemake.input.study[0]).parent)
    write_summary(loss_summary(summary), Path(out.scores[0]).parent)
    write_seed_table(summary, Path(out.table).with_suffix(""), params.title, params.jod_origin, job.registry)
    print(Path(out.table_md).read_text())
