"""Snakemake adapter: does each metric favour the model trained on it? Its table and figure, for the thesis's studies
or one of ours."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.agreement import measured_values, published_values, thesis_label
from lossbench.userstudy.report import read_summary
from lossbench.userstudy.self_preference import write_study

with workflow_job(snakemake) as job:
    if snakemake.params.published:
        studies = {
            study: (
                read_summary(Path(snakemake.input[study.removeprefix("thesis_")][0]).parent),
                {thesis_label(study, table): published_values(table) for table in tables},
            )
            for study, tables in snakemake.params.published.items()
        }
        what = "the thesis's data"
    else:
        study = snakemake.wildcards.study
        tables = {f"ours: {Path(table).name}": measured_values(table) for table in snakemake.input.tables}
        studies = {study: (read_summary(Path(snakemake.input.study[0]).parent), tables)}
        what = f"our study {study}"
    found = write_study(
        studies, Path(snakemake.output.csv).with_suffix(""), snakemake.output.figures, what, job.registry
    )
    for p in found:
        print(
            f"{p.source}: {p.metric}: gap {p.gap:+.3f} JOD [{p.interval[0]:+.3f}, {p.interval[1]:+.3f}], bounded gap"
            f" {p.bounded:+.3f} [{p.bounded_interval[0]:+.3f}, {p.bounded_interval[1]:+.3f}]"
        )
    print(f"wrote {snakemake.output.csv} ({len(found)} rows)")
