"""Synthetic MRI volumes in the exact fastMRI HDF5 layout, for offline demos and tests.

``fastmri.data.SliceDataset`` reads these files unchanged:

* single-coil (knee-like): ``kspace`` (S, 2M, W) complex64, ``reconstruction_esc`` (S, M, M) float32 and,
  as in fastMRI's single-coil files, ``reconstruction_rss`` (here the same image: one coil's RSS is its magnitude);
* multi-coil (brain-like): ``kspace`` (S, C, 2M, W) complex64 and ``reconstruction_rss`` (S, M, M) float32;
* ``ismrmrd_header``: ISMRMRD XML bytes with the encoded and recon matrix sizes and the phase-encoding
  limits from which fastMRI derives the k-space padding;
* file attributes ``max`` and ``norm`` (of the reconstruction volume), ``acquisition`` and ``patient_id``.

M is the reconstruction matrix, 320 as in fastMRI (W = 368 knee, 320 brain); a smaller M (e.g. 160,
W = 184 / 160) keeps the same layout for a quick CPU demo. W may be smaller than M, as in fastMRI's
narrow brain scans: the stored M × M reconstruction then holds the W image columns between zero columns.

The ``realistic`` preset (:func:`realistic_settings`) draws per volume what real fastMRI data varies:
16–40 slices, knee k-space widths 368 or 372, brain coil counts from 2 to 24 and one brain volume in
four narrower than the 320 crop, every fastMRI acquisition, and magnitudes from 1e-5 to 1e-2. Its
files have real sizes (M = 320), for benchmarks and the paper-shape rehearsal; unit tests use tiny files.

Knee slices are a procedural coronal proton-density phantom: femur, tibia and fibula with fatty marrow
crossed by trabeculae inside a dark cortex, articular cartilage, menisci, a cruciate ligament, muscle
with fat septa and subcutaneous fat. Brain slices are matplotlib's bundled MRI head slice
(``s1045.ima.gz``) with a fine tissue grain. Each volume draws its own shapes, textures, rotation,
smooth elastic deformation, intensity shading and image phase, which evolve continuously through its
slices. Slices sit at the centre of a 2M × W field of view: the readout is oversampled 2× as in real
fastMRI data, so the M × M reconstruction is a centre crop. K-space uses fastMRI's convention, a
centred orthonormal 2-D FFT (ifftshift → fft2(norm="ortho") → fftshift over the last two axes), and the
stored reconstruction is the centre crop of |ifft2c(kspace)| (single-coil) or of the root-sum-of-squares
of the coil images (multi-coil), so target and k-space agree to float32 precision.

Everything is drawn from a caller-seeded ``numpy.random.Generator``: equal seeds give equal arrays and,
HDF5 writing being deterministic, byte-identical files.

Modules: :mod:`.knee` (the knee phantom), :mod:`.anatomy` (each volume's geometry, its images and coil
maps), :mod:`.files` (the file writer) and ``__main__`` (the command line); the format's constants are
:mod:`lossbench.data.fastmri_format`'s. Their public names are imported here.
"""

from lossbench.data.fastmri_format import ACQUISITIONS, DEFAULT_MATRIX, ISMRMRD_NAMESPACE, RECON_KEYS, WIDTH_RATIO
from lossbench.data.fastmri_synthetic.anatomy import brain_image, coil_sensitivities
from lossbench.data.fastmri_synthetic.files import (
    ACQUISITION,
    ANATOMY,
    PRESETS,
    UNACQUIRED_FRACTION,
    acquired_columns,
    center_crop,
    default_width,
    fft2c,
    generate_dataset,
    ifft2c,
    ismrmrd_header,
    realistic_settings,
    slice_bytes,
    write_volume,
)

__all__ = [
    "ACQUISITION",
    "ACQUISITIONS",
    "ANATOMY",
    "DEFAULT_MATRIX",
    "ISMRMRD_NAMESPACE",
    "PRESETS",
    "RECON_KEYS",
    "UNACQUIRED_FRACTION",
    "WIDTH_RATIO",
    "acquired_columns",
    "brain_image",
    "center_crop",
    "coil_sensitivities",
    "default_width",
    "slice_bytes",
    "fft2c",
    "generate_dataset",
    "ifft2c",
    "ismrmrd_header",
    "realistic_settings",
    "write_volume",
]
