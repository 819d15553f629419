"""Snakemake adapter: decode a denoising task's training photographs once, into the file training crops from."""

from lossbench.core.logs import log_to
from lossbench.data.denoise import training_images, write_decoded

with log_to(snakemake.log[0]):
    count = write_decoded(training_images(snakemake.input[0]), snakemake.output[0])
    print(f"decoded {count} training images into {snakemake.output[0]}")
