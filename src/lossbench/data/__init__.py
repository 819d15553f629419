"""Datasets of the task kinds (lossbench.data.kinds, registry lossbench.data.tasks): RGB photographs (denoising, JPEG
deblocking) and fastMRI slices (real or synthetic)."""
