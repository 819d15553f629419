"""The live view of a training job: validation snapshots as PNGs and TensorBoard scalars."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lossbench.data.images import write_png


class LiveViewError(RuntimeError):
    """A live view of training is configured that cannot run (``trainer.tensorboard`` without the package)."""


class LiveView:
    """What a running training job shows besides its log and curve: validation snapshots and TensorBoard.

    Snapshots (``trainer.snapshots: {every: N, images: K}``): the model's outputs of the first K
    validation images, clamped to [0, 1], as PNGs in ``snapshots/epoch_<E>/`` every N epochs, with
    the inputs and references once in ``snapshots/input/`` and ``snapshots/target/``.
    TensorBoard (``trainer.tensorboard: true``): each epoch's train loss, validation loss and PSNR,
    and the snapshots, under ``tensorboard/<run>/``, at the step count.

    Args:
        run_dir: The run's output folder.
        run: Name of this run (the settings hash), so a changed settings is another TensorBoard run.
        snapshots: ``{"every": epochs, "images": count}``, or None for none.
        tensorboard: Log to TensorBoard.

    Raises:
        LiveViewError: ``tensorboard`` without the ``tensorboard`` package, before anything is written.
    """

    def __init__(
        self, run_dir: str | Path, run: str, snapshots: dict[str, int] | None = None, tensorboard: bool = False
    ):
        self.folder = Path(run_dir)
        self.snapshots = snapshots
        self.writer = None
        if tensorboard:
            try:
                # Deferred: TensorBoard is an optional extra, imported only when configured.
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise LiveViewError(
                    "trainer.tensorboard is true but the tensorboard package is not installed: pip install -e"
                    " '.[tensorboard]', or set trainer.tensorboard: false"
                ) from None
            self.writer = SummaryWriter(str(self.folder / "tensorboard" / run))

    def epoch(self, row: dict, model, valset, device) -> None:
        """Show the epoch that ``row`` (a curve row: epoch, step, train_loss, val_loss, val_psnr) ends.

        Args:
            model: The U-net (eval mode for the snapshots, then back to training mode).
            valset: The open validation :class:`~lossbench.data.valset.ImageFile`.
            device: Where the model is.
        """
        if self.writer is not None:
            for name in ("train_loss", "val_loss", "val_psnr"):
                self.writer.add_scalar(name, row[name], row["step"])
        if self.snapshots is not None and row["epoch"] % self.snapshots["every"] == 0:
            self._snapshot(row, model, valset, device)
        if self.writer is not None:
            self.writer.flush()

    def _snapshot(self, row: dict, model, valset, device) -> None:
        ids = valset.ids[: self.snapshots["images"]]
        folder = self.folder / "snapshots" / f"epoch_{row['epoch']:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        model.eval()
        with torch.no_grad():
            for image_id in ids:
                degraded = valset.read("input", image_id)
                restored = model(torch.from_numpy(degraded)[None].to(device))[0].float().clamp(0.0, 1.0).cpu().numpy()
                for group, image in (("input", degraded), ("target", valset.read("target", image_id))):
                    if not (self.folder / "snapshots" / group / f"{image_id}.png").exists():
                        (self.folder / "snapshots" / group).mkdir(parents=True, exist_ok=True)
                        write_png(self.folder / "snapshots" / group / f"{image_id}.png", _hwc(image))
                write_png(folder / f"{image_id}.png", _hwc(restored))
                if self.writer is not None:
                    self.writer.add_image(f"validation/{image_id}", restored, row["step"])
        model.train()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _hwc(image):
    """A (C, H, W) image as the (H, W, 3) array a PNG is written from (one channel repeated)."""
    return np.repeat(image, 3, axis=0).transpose(1, 2, 0) if image.shape[0] == 1 else image.transpose(1, 2, 0)
