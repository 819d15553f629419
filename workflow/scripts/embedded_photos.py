"""Snakemake adapter: write the bundled demo photographs of one split as PNG files."""

from lossbench.data.tasks import prepare_embedded_photos
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    written = prepare_embedded_photos(snakemake.params.names, snakemake.output[0], snakemake.params.max_side)
    print(f"wrote {len(written)} photographs to {snakemake.output[0]}")
