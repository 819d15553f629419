"""The knee phantom of the synthetic volumes: a coronal proton-density slice drawn from signed distances to bones,
cartilage, menisci, ligament, muscle and fat, with band-pass textures for trabeculae, fat septa and tissue grain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

TEXTURE_SIDE = 256  # texture lattices cover [-TEXTURE_EXTENT, TEXTURE_EXTENT]² of the normalised image plane
TEXTURE_EXTENT = 2.0


def _band_noise(rng: np.random.Generator, count: int, cycles: tuple[float, float], bandwidth: float) -> np.ndarray:
    """``count`` periodic band-pass noise lattices (count, TEXTURE_SIDE, TEXTURE_SIDE) of unit variance.

    Args:
        cycles: Centre frequency along (rows, cols), in cycles per unit of the normalised image plane;
            unequal values give streaks (fat septa in muscle), equal ones an isotropic labyrinth.
        bandwidth: Relative width of the pass band.
    """
    frequency = np.fft.fftfreq(TEXTURE_SIDE, d=2 * TEXTURE_EXTENT / TEXTURE_SIDE)
    rows, cols = np.meshgrid(frequency / cycles[0], frequency / cycles[1], indexing="ij")
    radius = np.hypot(rows, cols)
    gain = np.exp(-0.5 * ((radius - 1.0) / bandwidth) ** 2)
    fields = np.fft.ifft2(np.fft.fft2(rng.standard_normal((count, TEXTURE_SIDE, TEXTURE_SIDE))) * gain).real
    return fields / fields.std(axis=(-2, -1), keepdims=True)


def _sample_texture(fields: np.ndarray, mix: float, v_row: np.ndarray, v_col: np.ndarray) -> np.ndarray:
    """Texture at normalised positions (H, W): the unit-variance mix cos·A + sin·B of two lattices.

    Turning ``mix`` slowly through the slices of a volume evolves the texture continuously.
    """
    lattice = np.cos(mix) * fields[0] + np.sin(mix) * fields[1]
    scale = TEXTURE_SIDE / (2 * TEXTURE_EXTENT)
    coords = np.stack([(v_row + TEXTURE_EXTENT) * scale, (v_col + TEXTURE_EXTENT) * scale])
    return ndimage.map_coordinates(lattice, coords, order=1, mode="grid-wrap")


@dataclass(frozen=True)
class _Knee:
    """Per-volume shape and tissue parameters of the knee phantom (a coronal proton-density slice)."""

    joint: float  # row of the joint line, normalised units
    side: float  # +1 or -1: the fibula lies on this side
    leg: float  # half-width of the leg
    fat: float  # thickness of the subcutaneous fat
    condyle: float  # size factor of the femoral condyles and the tibial plateau
    spacing: float  # half-distance between the condyle centres
    spacing_drift: float
    contrast: np.ndarray  # (4,) factors of fat, muscle, cartilage and marrow intensity
    trabecular: np.ndarray  # (2, T, T) labyrinth lattices: trabecular bone
    septa: np.ndarray  # (2, T, T) vertical streak lattices: fat septa between muscle fibres
    grain: np.ndarray  # (2, T, T) fine isotropic lattices: tissue grain


def _sample_knee(rng: np.random.Generator) -> _Knee:
    return _Knee(
        joint=rng.uniform(-0.12, 0.12),
        side=float(rng.choice([-1.0, 1.0])),
        leg=rng.uniform(0.8, 0.92),
        fat=rng.uniform(0.06, 0.12),
        condyle=rng.uniform(0.9, 1.1),
        spacing=rng.uniform(0.26, 0.32),
        spacing_drift=rng.normal(0.0, 0.03),
        contrast=rng.uniform(0.85, 1.15, size=4),
        trabecular=_band_noise(rng, 2, (9.0, 9.0), 0.35),
        septa=_band_noise(rng, 2, (1.0, 7.0), 0.5),
        grain=_band_noise(rng, 2, (25.0, 25.0), 0.5),
    )


def _ellipse(
    row: np.ndarray, col: np.ndarray, centre: tuple[float, float], radii: tuple[float, float], power: float = 2.0
) -> np.ndarray:
    """Approximate signed distance to a super-ellipse (negative inside)."""
    norm = (np.abs((row - centre[0]) / radii[0]) ** power + np.abs((col - centre[1]) / radii[1]) ** power) ** (
        1 / power
    )
    return (norm - 1.0) * min(radii)


def _union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth minimum of two signed distances (a blend of radius ``k`` where the shapes meet)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _knee_image(knee: _Knee, row: np.ndarray, col: np.ndarray, t: float, edge: float) -> np.ndarray:
    """Magnitude (H, W) of a coronal knee slice at normalised positions ``row``, ``col``.

    Femur (two condyles, intercondylar notch, shaft), tibia (plateau, spines, shaft) and fibula hold
    fatty marrow crossed by dark trabeculae inside a dark cortex; articular cartilage lines the joint,
    dark menisci sit at its margins and a cruciate ligament in the notch; muscle with bright fat
    septa is wrapped in subcutaneous fat. ``edge`` is the width of the boundary blur (about a pixel).
    """

    def inside(distance: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 - np.tanh(distance / edge))

    j, size, spacing = knee.joint, knee.condyle, knee.spacing + knee.spacing_drift * t
    radius = 0.24 * size
    mix = 0.8 * t  # textures turn slowly through the volume
    femur = _union(
        _ellipse(row, col, (j - 0.04 - radius, -spacing), (radius, radius * 1.1)),
        _ellipse(row, col, (j - 0.04 - radius, spacing), (radius, radius * 1.1)),
        0.05,
    )
    femur = _union(femur, _ellipse(row, col, (j - 0.5, 0.0), (0.35, 0.45 * size)), 0.12)
    femur = _union(femur, np.maximum(np.abs(col) - 0.24, row - (j - 0.6)), 0.1)
    notch = _ellipse(row, col, (j - 0.04, 0.0), (0.2 * size, 0.07 + 0.02 * t))
    femur = np.maximum(femur, -notch)
    tibia = _ellipse(row, col, (j + 0.04 + 0.17 * size, 0.0), (0.17 * size, 0.62 * size), power=4.0)
    tibia = _union(tibia, _ellipse(row, col, (j + 0.05, 0.0), (0.06, 0.11)), 0.03)  # the spines
    tibia = _union(tibia, np.maximum(np.abs(col) - 0.22 - 0.05 * (row - j), j + 0.3 - row), 0.12)
    fibula = _ellipse(row, col, (j + 0.5, knee.side * 0.57 * size), (0.22, 0.085))
    bone = np.minimum(np.minimum(femur, tibia), fibula)

    contrast = knee.contrast
    grain = _sample_texture(knee.grain, mix, row, col)
    leg = np.abs(col) - knee.leg - 0.04 * np.cos(2.5 * row)
    image = inside(leg) * 0.9 * contrast[0] * (1.0 + 0.05 * grain)
    septa = np.exp(-((_sample_texture(knee.septa, mix, row, col) / 0.3) ** 2))
    muscle = 0.45 * contrast[1] * (1.0 + 0.05 * grain) + 0.15 * septa
    image += inside(leg + knee.fat) * (muscle - image)
    near_joint = np.exp(-(((row - j) / 0.18) ** 2))
    cartilage = inside(np.minimum(femur, tibia) - 0.035) * near_joint
    image += cartilage * (0.6 * contrast[2] * (1.0 + 0.05 * grain) - image)
    image += inside(bone) * (0.15 - image)  # cortex
    trabeculae = np.exp(-((_sample_texture(knee.trabecular, mix, row, col) / 0.3) ** 2))
    marrow = 0.7 * contrast[3] * (1.0 - 0.15 * trabeculae) * (1.0 + 0.03 * grain)
    image += inside(bone + 0.025) * (marrow - image)
    meniscus = np.minimum(
        _ellipse(row, col, (j, -0.52 * size), (0.04, 0.13 * size)),
        _ellipse(row, col, (j, 0.52 * size), (0.04, 0.13 * size)),
    )
    ligament = _ellipse(
        row * 0.8 + col * 0.6, -row * 0.6 + col * 0.8, (0.8 * (j - 0.1), -0.6 * (j - 0.1)), (0.14, 0.03)
    )
    image += inside(np.minimum(meniscus, ligament)) * (0.15 - image)
    return image
