"""Snakemake adapter: observer screening of one of our studies, and its JOD table without the flagged observers."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.counts import observer_names, read_counts
from lossbench.userstudy.report import anchored, observer_note, write_jod_table
from lossbench.userstudy.scaling import summarize
from lossbench.userstudy.screening import FLAG_Z, screen_study, write_screening

with workflow_job(snakemake) as job:
    out, params = snakemake.output, snakemake.params
    conditions, counts = read_counts(snakemake.input.counts)
    names = observer_names(snakemake.input.counts)
    fits, kept, kept_counts, left_out = screen_study(names, counts, FLAG_Z)
    write_screening(fits, Path(out.table).with_suffix(""), FLAG_Z, len(names))
    print(Path(out.table_md).read_text().splitlines()[0])
    summary = summarize(conditions, kept_counts, params.n_samples, params.seed)
    print(f"without flagged observers ({', '.join(left_out) or 'none flagged'}): {observer_note(summary)}")
    origin = anchored(summary, params.jod_origin, job.registry)[1]
    # The study's result is the JOD table of all observers; this one is beside it, and says so.
    which = (
        f"without the flagged observers {', '.join(left_out)}"
        if left_out
        else "of all observers (none flagged, or too few to screen)"
    )
    write_jod_table(
        summary,
        Path(out.jod_table).with_suffix(""),
        f"{params.title}: JOD scores {which} ({origin}; 1 JOD = 75 % preference; screening in"
        f" {Path(out.table_md).name}; the study's result keeps every observer).",
        params.jod_origin,
        job.registry,
    )
