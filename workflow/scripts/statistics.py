"""Snakemake adapter: the variance decomposition and the pairwise comparisons of one thesis table."""

from functools import partial
from pathlib import Path

from lossbench.pipeline.job import workflow_job
from lossbench.report.statistics_tables import write_pairs, write_variance
from lossbench.report.tables import Subject, table_title

with workflow_job(snakemake) as job:
    params = snakemake.params
    prefix = Path(snakemake.output.variance_csv).with_name(params.table)
    title = table_title(params.table)
    infos = job.registry.metric_rows(snakemake.config["metrics"])
    unit = Subject(**params.subject).unit
    label_of = partial(job.registry.loss_label, lpips_pretrained=params.lpips_pretrained)
    for path in write_variance(title, params.models, prefix, infos, unit) + write_pairs(
        title, params.models, prefix, label_of, infos, unit
    ):
        print(f"wrote {path}")
