"""Snakemake adapter: one task's table (or its fastMRI-metrics companion) from per-image metric files."""

from pathlib import Path

from lossbench import losses, metrics
from lossbench.core.logs import log_to
from lossbench.report.tables import Subject, build_table, write_all, write_per_seed

with log_to(snakemake.log[0]):
    losses.register_config(snakemake.config)  # the configuration's own losses (losses.<name>.module)
    metrics.register_config(snakemake.config)  # the configuration's own metrics (own_metrics.<name>)
    params = snakemake.params
    subject = Subject(**params.subject)
    table = build_table(subject, snakemake.input.inputs, params.models, params.lpips_pretrained, params.suite, params.loss_params, params.evaluation)
    # Only the thesis's own tables have published values to compare with.
    for path in write_all(table, Path(snakemake.output.csv).with_suffix(""), with_paper=params.suite == "thesis" and subject.thesis):
        print(f"wrote {path}")
    if params.suite == "thesis":
        for path in write_per_seed(subject, params.models, params.seeds, Path(snakemake.output.csv).with_suffix(""), params.lpips_pretrained):
            print(f"wrote {path}")
