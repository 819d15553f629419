"""Inference: a trained model on the workflow's validation set, or on one's own images and fastMRI files.

The MRI outputs also exist in fastMRI's submission layout (:func:`save_reconstructions`): one HDF5
file per volume, named as the volume's file, holding ``reconstruction`` (slices, H, W) float32 at
the volume's own scale, which ``python -m fastmri.evaluate`` reads beside the ground-truth files.

CLI (one's own data):
    python -m lossbench.infer --model results/<experiment>/models/<task>/<loss>/seed0/model.pt \
        --input FOLDER --out FOLDER [--sigma 25] [--overwrite] [--max-pixels N]

On one's own data, every output is written to a temporary file beside it and renamed into place,
carrying a record (PNG text chunk or HDF5 attribute :data:`RECORD_KEY`) of the model file's and
the input file's SHA-256 and the settings. An output that exists is therefore complete, and one
whose record matches is done: a rerun of a stopped run keeps it and computes only the rest, with or
without ``--overwrite``. Any other existing output stops the run before any work unless
``--overwrite`` is given.

Modules: :mod:`.valset` (the workflow's validation set), :mod:`.images` (one's own images),
:mod:`.volumes` (fastMRI volumes and submission files), :mod:`.folder` (either, by the model's
task), :mod:`.common` (what they share: errors, records, atomic writes) and :mod:`.cli` (the command
line).
"""

from lossbench.infer.cli import main
from lossbench.infer.common import RECORD_KEY, InferenceInputError, OutputExistsError, OutputWriteError
from lossbench.infer.folder import restore_folder
from lossbench.infer.images import DEFAULT_MAX_PIXELS, restore_images
from lossbench.infer.valset import run
from lossbench.infer.volumes import restore_volumes, save_reconstructions, write_fastmri_reconstructions

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RECORD_KEY",
    "InferenceInputError",
    "OutputExistsError",
    "OutputWriteError",
    "main",
    "restore_folder",
    "restore_images",
    "restore_volumes",
    "run",
    "save_reconstructions",
    "write_fastmri_reconstructions",
]
