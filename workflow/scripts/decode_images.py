"""Snakemake adapter: decode a denoising task's training photographs once, into the file training crops from."""

from lossbench.data.denoise import training_images, write_decoded
from lossbench.pipeline.job import workflow_job

with workflow_job(snakemake):
    count = write_decoded(training_images(snakemake.input[0]), snakemake.output[0])
    print(f"decoded {count} training images into {snakemake.output[0]}")
