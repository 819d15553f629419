"""Datasets: RGB denoising images and fastMRI slices (real or synthetic)."""
