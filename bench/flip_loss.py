"""FLIP as a training loss: the measurements of docs/flip_loss.md.

    python bench/flip_loss.py train [--steps 400] [--variants clamp inward extrapolate l2 l1] [--no-residual]
    python bench/flip_loss.py pixels [--steps 300]
    python bench/flip_loss.py gradient [--ppd 22.3]

``train``: a width-8, depth-3 U-net (residual unless --no-residual) on 64-pixel crops of
scikit-image's astronaut with noise sigma ~ U[0, 40]/255, batch 8, Adam 1e-3, trained with each
variant (a FLIPLoss out_of_range option, or l1 / l2), then scored on 32 fresh crops: PSNR of
the raw and of the clamped outputs, FLIP (the metric, which clamps), the share of output values
outside [0, 1], and the share that stays more than 0.1 off after clamping ("stuck").

``pixels``: the pixels of one noisy crop are optimised directly under FLIP at several pixels per
degree: how much error can an image keep at a low FLIP?

``gradient``: how strongly each loss pulls on a noisy image's pixels, by noise level and by how
wrong the pixel is: the mean per-pixel gradient magnitude of FLIP, l1 and l2 (summed over the
image) for scikit-image's astronaut at 256 pixels with Gaussian noise of several sigma, relative
to its value at sigma = 5, and per quintile of the pixels' error at sigma = 25.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from skimage import data

from lossbench.flip import OUT_OF_RANGE, flip
from lossbench.losses.flip import FLIPLoss
from lossbench.models import UNet


def _psnr(output: torch.Tensor, target: torch.Tensor) -> float:
    return float((10 * torch.log10(1 / ((output - target) ** 2).mean((1, 2, 3)))).mean())


def _split(residual: torch.Tensor) -> str:
    luma = residual.mean(1, keepdim=True)
    return f"MSE*1e3 luma {float((luma**2).mean()) * 1e3:.2f} chroma {float(((residual - luma) ** 2).mean()) * 1e3:.2f}"


def train(steps: int, variants: list[str], residual: bool) -> None:
    image = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)

    def batch(n: int, gen: torch.Generator | None = None, crop: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        top = torch.randint(0, image.shape[1] - crop, (n,), generator=gen)
        left = torch.randint(0, image.shape[2] - crop, (n,), generator=gen)
        clean = torch.stack([image[:, y : y + crop, x : x + crop] for y, x in zip(top.tolist(), left.tolist())])
        sigma = torch.rand(n, 1, 1, 1, generator=gen) * 40 / 255
        return clean + sigma * torch.randn(clean.shape, generator=gen), clean

    pixel_losses = {"l1": lambda o, y: (o - y).abs().mean(), "l2": lambda o, y: ((o - y) ** 2).mean()}
    for variant in variants:
        torch.manual_seed(0)
        model = UNet(3, 3, width=8, depth=3, kernel_size=3, residual=residual)
        loss_fn = pixel_losses.get(variant) or FLIPLoss(out_of_range=variant)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        start = time.perf_counter()
        for _ in range(steps):
            noisy, clean = batch(8)
            loss = loss_fn(model(noisy), clean)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        noisy, clean = batch(32, torch.Generator().manual_seed(1))
        with torch.no_grad():
            raw = model(noisy)
        clamped = raw.clamp(0, 1)
        outside = (raw < 0) | (raw > 1)
        stuck = float((outside & ((clamped - clean).abs() > 0.1)).float().mean())
        print(
            f"{variant:12s} {steps} steps {time.perf_counter() - start:4.0f}s | PSNR input {_psnr(noisy, clean):.2f}"
            f" (clamped {_psnr(noisy.clamp(0, 1), clean):.2f}), output {_psnr(raw, clean):.2f} (clamped"
            f" {_psnr(clamped, clean):.2f}) dB | FLIP {float(flip(noisy, clean).mean()):.4f} ->"
            f" {float(flip(raw, clean).mean()):.4f} | outside [0, 1] {float(outside.float().mean()):.3f}, stuck"
            f" {stuck:.4f} | {_split(clamped - clean)}",
            flush=True,
        )


def pixels(steps: int) -> None:
    torch.manual_seed(0)
    image = torch.from_numpy(data.astronaut()[::2, ::2].astype(np.float32) / 255).permute(2, 0, 1)[
        None, :, 40:104, 40:104
    ]
    start = (image + 25 / 255 * torch.randn_like(image)).clamp(0, 1)

    def report(label: str, x: torch.Tensor) -> None:
        with torch.no_grad():
            print(
                f"{label:22s} FLIP(67 ppd) {float(flip(x, image).mean()):.4f}  PSNR {_psnr(x.clamp(0, 1), image):.2f}"
                f" dB  {_split(x.clamp(0, 1) - image)}",
                flush=True,
            )

    report("noisy start", start)
    for ppd in (67.02064514, 30.0, 10.0):
        x = start.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([x], lr=3e-3)
        loss_fn = FLIPLoss(ppd=ppd)
        for _ in range(steps):
            loss = loss_fn(x, image)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        report(f"FLIP at {ppd:.0f} ppd, optimum", x)


def gradient(ppd: float) -> None:
    clean = torch.from_numpy(data.astronaut()[::2, ::2].astype(np.float32) / 255).permute(2, 0, 1)[None]
    losses = {
        "FLIP": FLIPLoss(ppd=ppd, reduction="sum"),
        "l1": lambda o, y: (o - y).abs().sum(),
        "l2": lambda o, y: ((o - y) ** 2).sum(),
    }
    sigmas = (5, 15, 25, 40)
    print(
        f"mean per-pixel |gradient| relative to sigma = 5 (FLIP at {ppd:g} ppd), sigma {sigmas}; then, at sigma = 25,"
        " per quintile of the pixel's error (smallest first) relative to the smallest"
    )
    for name, loss_fn in losses.items():
        by_sigma, quintiles = [], []
        for sigma in sigmas:
            generator = torch.Generator().manual_seed(0)
            noisy = (
                (clean + sigma / 255 * torch.randn(clean.shape, generator=generator)).clamp(0, 1).requires_grad_(True)
            )
            loss_fn(noisy, clean).backward()
            pull = noisy.grad.abs().sum(1).flatten()
            by_sigma.append(float(pull.mean()))
            if sigma == 25:
                error = (noisy.detach() - clean).abs().sum(1).flatten()
                bins = torch.bucketize(error, torch.quantile(error, torch.tensor([0.2, 0.4, 0.6, 0.8])))
                quintiles = [float(pull[bins == b].mean()) for b in range(5)]
        print(
            f"{name:5s} by sigma: {' '.join(f'{v / by_sigma[0]:.2f}' for v in by_sigma)} | by error quintile:"
            f" {' '.join(f'{v / quintiles[0]:.2f}' for v in quintiles)}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train_parser = sub.add_parser("train")
    train_parser.add_argument("--steps", type=int, default=400)
    train_parser.add_argument(
        "--variants", nargs="+", default=[*OUT_OF_RANGE, "l2", "l1"], choices=[*OUT_OF_RANGE, "l2", "l1"]
    )
    train_parser.add_argument(
        "--no-residual", action="store_true", help="U-net without the global input-to-output skip"
    )
    pixel_parser = sub.add_parser("pixels")
    pixel_parser.add_argument("--steps", type=int, default=300)
    gradient_parser = sub.add_parser("gradient")
    gradient_parser.add_argument(
        "--ppd", type=float, default=22.3, help="FLIP's pixels per degree (the demo's 22.3; the thesis's 67.02)"
    )
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.command == "train":
        train(args.steps, args.variants, not args.no_residual)
    elif args.command == "gradient":
        gradient(args.ppd)
    else:
        pixels(args.steps)


if __name__ == "__main__":
    main()
