"""The fastMRI HDF5 format: the datasets, layouts and header fields of its files and the crop a task takes of them.

The real-data readers (:mod:`lossbench.data.fastmri_files`, :mod:`lossbench.data.mri`) check files
against these, and the synthetic generator (:mod:`lossbench.data.fastmri_synthetic`) writes them.
"""

from __future__ import annotations

DEFAULT_MATRIX = 320  # side of the stored reconstruction, as in fastMRI; the readout is 2× this
#: The dataset of each challenge's reference images.
RECON_KEYS = {"singlecoil": "reconstruction_esc", "multicoil": "reconstruction_rss"}
KSPACE_NDIM = {"singlecoil": 3, "multicoil": 4}  # (S, H, W) or (S, C, H, W)
#: Phase-encoding columns per reconstruction column: fastMRI knee k-space is 368 wide for 320 columns.
WIDTH_RATIO = {"singlecoil": 368 / 320, "multicoil": 1.0}
#: Every acquisition of fastMRI's knee and brain data sets.
ACQUISITIONS = {
    "singlecoil": ("CORPD_FBK", "CORPDFS_FBK"),
    "multicoil": ("AXT1", "AXT1PRE", "AXT1POST", "AXT2", "AXFLAIR"),
}
#: XML namespace of the ``ismrmrd_header`` dataset.
ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
#: Header fields ``fastmri.data.SliceDataset`` reads to find the k-space padding and image size.
HEADER_FIELDS = (
    "encoding/encodedSpace/matrixSize/x",
    "encoding/encodedSpace/matrixSize/y",
    "encoding/reconSpace/matrixSize/x",
    "encoding/reconSpace/matrixSize/y",
    "encoding/encodingLimits/kspace_encoding_step_1/center",
    "encoding/encodingLimits/kspace_encoding_step_1/maximum",
)


def crop_side(kspace_shape: tuple[int, ...], crop: int) -> int:
    """Side of the square crop of a volume with k-space ``kspace_shape`` (..., H, W): ``crop``, or W
    when the k-space is narrower, as fastMRI's ``UnetDataTransform`` crops such brain scans (its
    "FLAIR 203" case) to W × W."""
    return min(crop, kspace_shape[-1])
