"""Snakemake adapter: write the bundled demo photographs of one split as PNG files."""

from lossbench.core.logs import log_to
from lossbench.data.tasks import prepare_embedded_photos

with log_to(snakemake.log[0]):
    written = prepare_embedded_photos(snakemake.params.names, snakemake.output[0], snakemake.params.max_side)
    print(f"wrote {len(written)} photographs to {snakemake.output[0]}")
