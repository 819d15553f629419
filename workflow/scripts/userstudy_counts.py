"""Snakemake adapter: per-observer count matrices of our own study from the observers' answer files."""

from lossbench.logs import log_to
from lossbench.userstudy.counts import write_counts
from lossbench.userstudy.responses import observer_counts
from lossbench.userstudy.stimuli import load_manifest

with log_to(snakemake.log[0]):
    observers, conditions, counts = observer_counts(load_manifest(snakemake.input.manifest), snakemake.params.folder)
    write_counts(conditions, counts, snakemake.output[0], observers)
    print(f"{len(observers)} observers, {int(counts.sum())} answers")
