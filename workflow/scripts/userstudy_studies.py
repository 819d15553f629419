"""Snakemake adapter: which of our own studies have answers and are analysed, and which are not."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.report import write_study_status

with workflow_job(snakemake):
    rows = snakemake.params.rows
    for row in rows:
        print(f"{row['study']}: {row['answer_files']} answer files in {row['responses']}: {row['status']}")
    write_study_status(rows, Path(snakemake.output.csv).with_suffix(""))
