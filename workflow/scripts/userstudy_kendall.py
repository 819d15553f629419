"""Snakemake adapter: Kendall τ between each metric's ranking of the models and the observers' JOD ranking."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.agreement import agreement_rows, measured_values, published_values, write_agreement
from lossbench.userstudy.report import observer_note, read_summary

with workflow_job(snakemake) as job:
    rows, notes = [], []
    if snakemake.params.published:
        for study, tables in snakemake.params.published.items():
            summary = read_summary(Path(snakemake.input[study.removeprefix("thesis_")][0]).parent)
            notes.append(f"{study}: {observer_note(summary)}")
            for table in tables:
                rows += agreement_rows(
                    summary,
                    published_values(table),
                    f"{study}: thesis {table.replace('table_', 'Table ').replace('_', '.')}",
                    registry=job.registry,
                )
    else:
        summary = read_summary(Path(snakemake.input.study[0]).parent)
        notes.append(observer_note(summary))
        for table in snakemake.input.tables:
            rows += agreement_rows(summary, measured_values(table), f"ours: {Path(table).name}", registry=job.registry)
    caption = (
        "Rank agreement of each metric with the observers (Kendall τ-b over the models, 95 % interval from the JOD"
        f" bootstrap). {' '.join(note + '.' for note in notes)}"
    )
    print(caption)
    write_agreement(rows, Path(snakemake.output.csv).with_suffix(""), caption, job.registry)
