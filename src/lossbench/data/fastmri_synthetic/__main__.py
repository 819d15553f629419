"""``python -m lossbench.data.fastmri_synthetic``: write synthetic fastMRI volumes (see ``--help``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lossbench.data.fastmri_format import DEFAULT_MATRIX, RECON_KEYS
from lossbench.data.fastmri_synthetic.files import PRESETS, generate_dataset


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lossbench.data.fastmri_synthetic",
        description="Write synthetic MRI volumes in the fastMRI HDF5 format (readable by fastmri.data.SliceDataset).",
    )
    parser.add_argument(
        "--challenge",
        required=True,
        choices=sorted(RECON_KEYS),
        help="knee-like single-coil or brain-like multi-coil data",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created if missing)")
    parser.add_argument("--volumes", required=True, type=int, help="number of volumes (files)")
    parser.add_argument(
        "--slices",
        type=int,
        default=None,
        help="slices per volume (required without --preset realistic, where it caps the drawn 16-40)",
    )
    parser.add_argument("--seed", required=True, type=int, help="random seed; equal seeds give identical files")
    parser.add_argument(
        "--matrix",
        type=int,
        default=DEFAULT_MATRIX,
        help=f"side of the reconstruction; k-space has twice as many readout rows (default {DEFAULT_MATRIX})",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="phase-encoding columns (default 1.15·matrix single-coil, matrix multi-coil: 368 and 320)",
    )
    parser.add_argument("--coils", type=int, default=None, help="coils per multi-coil volume (default 4)")
    parser.add_argument(
        "--preset",
        choices=PRESETS,
        default="default",
        help="realistic: fastMRI's sizes and variety per volume (see realistic_settings)",
    )
    parser.add_argument(
        "--prefix", default="file", help="file names are PREFIX_000.h5, PREFIX_001.h5, ... (default 'file')"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing files whose content differs")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see ``--help``."""
    args = _parser().parse_args(argv)
    try:
        paths = generate_dataset(
            args.out,
            args.challenge,
            args.volumes,
            args.slices,
            args.seed,
            args.prefix,
            args.width,
            args.coils,
            args.overwrite,
            args.matrix,
            args.preset,
        )
    except (ValueError, FileExistsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {len(paths)} {args.challenge} volumes to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
