"""Snakemake adapter: one task's table (or its fastMRI-metrics companion) from per-image metric files."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.report.table_files import write_all, write_per_seed
from lossbench.report.tables import Subject, build_table

with workflow_job(snakemake) as job:
    params = snakemake.params
    subject = Subject(**params.subject)
    table = build_table(
        subject,
        snakemake.input.inputs,
        params.models,
        params.lpips_pretrained,
        params.suite,
        params.loss_params,
        params.evaluation,
        job.registry,
    )
    # Only the thesis's own tables have published values to compare with.
    for path in write_all(
        table, Path(snakemake.output.csv).with_suffix(""), with_paper=params.suite == "thesis" and subject.thesis
    ):
        print(f"wrote {path}")
    if params.suite == "thesis":
        for path in write_per_seed(
            subject,
            params.models,
            params.seeds,
            Path(snakemake.output.csv).with_suffix(""),
            params.lpips_pretrained,
            job.registry,
        ):
            print(f"wrote {path}")
