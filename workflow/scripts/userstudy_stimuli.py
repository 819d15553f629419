"""Snakemake adapter: flicker stimuli and the manifest of one of our own studies, from the images of its tasks."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.userstudy.stimuli import Source, make_study_stimuli

with workflow_job(snakemake):
    params = snakemake.params
    sources = []
    for task in params.tasks:
        outputs = dict(zip(params.losses, snakemake.input[f"outputs_{task}"]))
        sources.append(Source(task, snakemake.input[f"valset_{task}"], outputs, params.images[task]))
    path = make_study_stimuli(
        snakemake.wildcards.study, sources, Path(snakemake.output.manifest).parent, params.flicker_ms, params.viewing
    )
    print(f"wrote {path}")
