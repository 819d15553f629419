"""Snakemake adapter: a study's JOD scaling with bootstrap, its probability and JOD tables, JOD plot and ranking
triangle."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.counts import read_counts
from lossbench.userstudy.report import (
    anchored,
    jod_plot,
    observer_note,
    ranking_triangle,
    write_jod_table,
    write_probability_table,
    write_summary,
)
from lossbench.userstudy.responses import read_skipped, skip_note
from lossbench.userstudy.scaling import summarize

with workflow_job(snakemake) as job:
    out, params = snakemake.output, snakemake.params
    conditions, counts = read_counts(snakemake.input.counts)
    summary = summarize(conditions, counts, params.n_samples, params.seed, observers=params.observers)
    write_summary(summary, Path(out.jod).parent)
    print(f"{params.title}: {observer_note(summary)}")
    print("JOD (mean 0):", ", ".join(f"{c} {q:+.3f}" for c, q in zip(conditions, summary.jod)))
    pooled = counts.sum(axis=0) if counts.ndim == 3 else counts
    prefix = Path(out.table).with_suffix("")
    write_probability_table(
        conditions,
        pooled,
        prefix,
        f"{params.title}: probability of choosing the column's loss over the row's; the winner of each comparison in"
        " bold.",
        job.registry,
    )
    # Our studies: what the answer files held besides answers, in the log and the JOD table's caption.
    skipped = skip_note(read_skipped(snakemake.input.skipped)) if "skipped" in snakemake.input.keys() else ""
    if skipped:
        print(skipped)
    origin = anchored(summary, params.jod_origin, job.registry)[1]
    write_jod_table(
        summary,
        Path(out.jod_table).with_suffix(""),
        f"{params.title}: JOD scores ({origin}; 1 JOD = 75 % preference). {skipped}".strip(),
        params.jod_origin,
        job.registry,
    )
    jod_plot(summary, [out.jod_png, out.jod_pdf], params.title, params.jod_origin, job.registry)
    ranking_triangle(summary, [out.triangle_png, out.triangle_pdf], params.title, params.jod_origin, job.registry)
