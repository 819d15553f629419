"""Snakemake adapter: how each metric agrees with the observers (Kendall τ, Spearman ρ, its error in JOD)."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.agreement import (
    agreement_rows,
    baseline_note,
    measured_values,
    published_values,
    thesis_label,
    write_agreement,
)
from lossbench.userstudy.report import observer_note, read_summary

with workflow_job(snakemake) as job:
    rows, notes = [], []
    if snakemake.params.published:
        for study, tables in snakemake.params.published.items():
            summary = read_summary(Path(snakemake.input[study.removeprefix("thesis_")][0]).parent)
            notes += [f"{study}: {observer_note(summary)}", baseline_note(summary, study)]
            for table in tables:
                rows += agreement_rows(
                    summary, published_values(table), thesis_label(study, table), registry=job.registry
                )
    else:
        summary = read_summary(Path(snakemake.input.study[0]).parent)
        notes += [observer_note(summary), baseline_note(summary, "this study")]
        for table in snakemake.input.tables:
            rows += agreement_rows(summary, measured_values(table), f"ours: {Path(table).name}", registry=job.registry)
    caption = (
        "Agreement of each metric with the observers: Kendall τ-b and Spearman ρ over the models, and the error in JOD"
        " of the metric's map to JOD, each with its 95 % interval from the JOD bootstrap."
        f" {' '.join(note + '.' for note in notes)}"
    )
    print(caption)
    write_agreement(rows, Path(snakemake.output.csv).with_suffix(""), caption, job.registry)
