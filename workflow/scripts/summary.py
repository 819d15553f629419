"""Snakemake adapter: results/<experiment>/summary.md from the tables' CSVs, the inputs' metrics and the models'
curves."""

from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.report.summary import read_curves, scale, summarise

with workflow_job(snakemake) as job:
    params = snakemake.params
    per_table = len(params.losses)
    curves, scales = {}, {}
    for index, (table, input_csv) in enumerate(zip(params.tables, snakemake.input.inputs, strict=True)):
        task = params.tasks[table]
        paths = dict(
            zip(params.losses, snakemake.input.curves[index * per_table : (index + 1) * per_table], strict=True)
        )
        curves[table] = read_curves(paths)
        scales[task] = scale(
            params.kinds[task], snakemake.config["tasks"][task], input_csv, next(iter(paths.values())), params.seeds
        )
    text = summarise(
        dict(zip(params.tables, snakemake.input.tables, strict=True)),
        params.tasks,
        params.description,
        scales,
        curves,
        job.registry,
    )
    Path(snakemake.output[0]).write_text(text)
