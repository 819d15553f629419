"""Snakemake adapter: per-observer count matrices of our own study from the observers' answer files, and the lines
skipped in them."""

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.counts import write_counts
from lossbench.userstudy.responses import observer_counts, read_folder, skip_note, write_skipped
from lossbench.userstudy.stimuli import load_manifest

with workflow_job(snakemake):
    files = read_folder(snakemake.params.folder)
    observers, conditions, counts = observer_counts(load_manifest(snakemake.input.manifest), files)
    write_counts(conditions, counts, snakemake.output.counts, observers)
    print(f"{len(observers)} observers, {int(counts.sum())} answers")
    print(skip_note(write_skipped(files, snakemake.output.skipped)))
