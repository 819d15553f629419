"""Viewing conditions of a study: how far observers sit from the screen.

The app shows the stimuli one image pixel per screen pixel, so the visual angle of a pixel depends
on the screen's pixel pitch and the viewing distance. The conditions are FLIP's
(``evaluation.flip``, the metric's and the loss's): either a viewing geometry (a distance from a
monitor of a given width and horizontal resolution) or pixels per degree alone. From pixels per
degree alone a distance follows only for a stated pixel pitch, so the observers are told the
distance for the monitor of ``evaluation.flip``'s defaults, which this project assumes for the
thesis (§3.1 names 70 cm only), and how to work it out for another screen.
"""

from __future__ import annotations

import math

from lossbench.flip import VIEWING, flip_ppd

#: The keys of a viewing geometry in ``evaluation.flip``.
GEOMETRY = ("distance_m", "monitor_width_m", "monitor_pixels")
#: Degrees per radian: FLIP's small-angle formula, ppd = distance × pixels / width × π / 180, solved
#: for the distance gives ppd × pitch × this.
DEGREES_PER_RADIAN = 180.0 / math.pi


def default_geometry() -> dict[str, float]:
    """``evaluation.flip``'s default geometry (the workflow's defaults): the thesis's,
    :data:`lossbench.flip.VIEWING`."""
    return {key: VIEWING[key] for key in GEOMETRY}


def _positive(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _display(monitor_width_m: float, monitor_pixels: int) -> str:
    return f"a {100 * monitor_width_m:.0f} cm wide monitor with {monitor_pixels} pixels across"


def pixels_per_degree(viewing: dict) -> float:
    """Pixels per degree of ``viewing`` (``evaluation.flip``'s keys): its ``ppd`` where set, else its geometry's."""
    return flip_ppd({"flip": viewing})


def conditions(flip: dict, source: str = "evaluation.flip") -> dict:
    """What a manifest records of ``flip`` (``evaluation.flip``'s keys).

    The geometry (missing keys at their defaults) with its pixels per degree; but ``{"ppd": P}``
    where a set ``ppd`` differs from the geometry's, since it then replaces the geometry, whose keys
    hold mere defaults. A recorded geometry with its own ``ppd`` is thus recorded as it is.

    Raises:
        ValueError: one line naming ``source``, the key and the value, for a value that is no
            positive number or an unknown key.
    """
    unknown = sorted(set(flip) - {*GEOMETRY, "ppd"})
    if unknown:
        raise ValueError(f"{source}: unknown key {unknown[0]!r} (expected ppd or {', '.join(GEOMETRY)})")
    for key, value in flip.items():
        if value is not None and not _positive(value):
            raise ValueError(f"{source}.{key}: expected a positive number, got {value!r}")
    geometry = {**default_geometry(), **{key: flip[key] for key in GEOMETRY if flip.get(key) is not None}}
    ppd = pixels_per_degree(geometry)
    if flip.get("ppd") is not None and not math.isclose(flip["ppd"], ppd, rel_tol=1e-6):
        return {"ppd": float(flip["ppd"])}
    return {**geometry, "ppd": ppd}


def recorded(viewing: object, source: str) -> dict:
    """``viewing`` after checking it is what :func:`conditions` returns: a positive ``ppd``, with all of the geometry or
    none.

    Raises:
        ValueError: one line naming ``source`` and what is wrong.
    """
    if not isinstance(viewing, dict) or "ppd" not in viewing:
        raise ValueError(f"{source}: viewing conditions must hold 'ppd', got {viewing!r}")
    given = [key for key in GEOMETRY if key in viewing]
    if given and len(given) < len(GEOMETRY):
        raise ValueError(
            f"{source}: viewing conditions hold {', '.join(given)} but not"
            f" {', '.join(key for key in GEOMETRY if key not in given)}"
        )
    for key in ("ppd", *given):
        if not _positive(viewing[key]):
            raise ValueError(f"{source}: viewing.{key}: expected a positive number, got {viewing[key]!r}")
    return viewing


def distance_m(ppd: float, monitor_width_m: float, monitor_pixels: int) -> float:
    """Distance, in metres, at which one pixel of the monitor subtends 1 / ``ppd`` degree."""
    return ppd * monitor_width_m / monitor_pixels * DEGREES_PER_RADIAN


def instructions(viewing: dict) -> tuple[str, str]:
    """How far to sit, for the start page: an instruction for one stated display, and how to work it out for another.

    Args:
        viewing: The manifest's ``viewing`` (see :func:`conditions`). Without its geometry the
            distance is stated for the monitor of ``evaluation.flip``'s defaults, and said to be.
    """
    ppd = viewing["ppd"]
    configured = all(key in viewing for key in GEOMETRY)
    monitor = viewing if configured else default_geometry()
    distance_cm = 100 * distance_m(ppd, monitor["monitor_width_m"], monitor["monitor_pixels"])
    display = _display(monitor["monitor_width_m"], monitor["monitor_pixels"])
    whose = (
        "the study's viewing conditions"
        if configured
        else "the study gives pixels per degree only; this is the monitor this project assumes for the thesis"
    )
    return (
        f"Sit about {distance_cm:.0f} cm from the screen if it is {display} ({whose}).",
        (
            f"The images are meant to be seen at {ppd:.1f} pixels per degree of visual angle, one image pixel per"
            f" screen pixel. On another screen, sit {ppd * DEGREES_PER_RADIAN:.0f} times its pixel pitch away (pixel"
            " pitch: the screen's width divided by its pixels across)."
        ),
    )
