"""Files in and out, each format written in one place: CSV rows, metric CSVs, Markdown and LaTeX tables, figures.

- **CSV** (:func:`read_rows`, :func:`read_csv`, :func:`read_lists`, :func:`write_rows`): rows of
  strings. Most files end their lines with ``\\n``; those that have always been written with the csv
  module's own ``\\r\\n`` (:data:`CRLF`: the metric CSVs, the training curves, the data manifests)
  keep it, so that a rerun writes the same bytes. ``atomic`` writes go through :func:`atomic_file`.
- **Metric CSVs** (:func:`write_metrics`, :func:`read_metrics`): the per-image (or per-volume)
  values of the metrics, first column the image or volume id, floats to 8 significant digits.
- **Markdown and LaTeX tables** (:func:`markdown_table`, :func:`numbered`, :func:`latex_table`):
  the table's text; the caller escapes cells and captions for LaTeX and marks bold cells.
- **Figures** (:func:`save_figure`): every format of a figure at 150 dpi, PDFs without a creation
  date so that reruns write the same bytes.
"""

from __future__ import annotations

import contextlib
import csv
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

#: The line terminator of the csv module's default dialect, kept by the files that have always been written with it.
CRLF = "\r\n"
#: Resolution of every saved raster figure.
FIGURE_DPI = 150


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "wb", **options: Any) -> Iterator[IO]:
    """``<path>.tmp`` opened for writing; once written and synced it replaces ``path``, so a kill leaves ``path`` old or
    complete.

    A failed write (a full disk) removes the temporary file, leaves ``path`` as it was and raises
    an :class:`OSError` whose message is one line naming ``path``.
    """
    path = Path(path)
    temporary = path.with_name(path.name + ".tmp")
    try:
        with open(temporary, mode, **options) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OSError(
                error.errno,
                f"{path}: not written ({error.strerror or error}); the file there before, if any, is unchanged",
            ) from None
        raise


def read_csv(path: str | Path) -> tuple[list[str], list[dict[str, str]]]:
    """The header of CSV ``path`` (empty for an empty file) and its rows as ``{column: cell}``."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def read_rows(path: str | Path) -> list[dict[str, str]]:
    """The rows of CSV ``path`` as ``{column: cell}``, header first."""
    return read_csv(path)[1]


def read_lists(path: str | Path) -> list[list[str]]:
    """Every line of CSV ``path``, the header included, as a list of cells."""
    with open(path, newline="") as handle:
        return list(csv.reader(handle))


def write_rows(
    path: str | Path,
    rows: Iterable[Mapping[str, Any]] | Iterable[Sequence[Any]],
    fields: Sequence[str] | None = None,
    *,
    terminator: str = "\n",
    atomic: bool = False,
) -> None:
    """Write ``rows`` to CSV ``path``, its folder made if missing.

    Args:
        path: The file.
        rows: Mappings (``fields`` names their columns, in order; a missing key is an empty cell) or
            sequences of cells (``fields``, if given, is written as the header above them).
        fields: The header.
        terminator: What ends every line: ``\\n``, or :data:`CRLF` for the files written so before.
        atomic: Write through :func:`atomic_file`, so that a reader sees the old file or the whole new one.
    """
    rows = list(rows)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    opened = atomic_file(path, "w", newline="") if atomic else open(path, "w", newline="")
    with opened as handle:
        if rows and isinstance(rows[0], Mapping):
            writer = csv.DictWriter(handle, fieldnames=list(fields or []), lineterminator=terminator)
            writer.writeheader()
        else:
            writer = csv.writer(handle, lineterminator=terminator)
            if fields is not None:
                writer.writerow(fields)
        writer.writerows(rows)


def write_metrics(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Metric rows (``{"image": id, metric: value, ...}``, or per volume, or per mode) as CSV; floats with 8
    significant digits so that reruns compare byte for byte, lines ended as the csv module ends them."""
    formatted = [
        {key: f"{value:.8g}" if isinstance(value, float) else value for key, value in row.items()} for row in rows
    ]
    write_rows(path, formatted, list(rows[0]), terminator=CRLF)


def read_metrics(path: str | Path) -> dict[str, dict[str, float]]:
    """A metric CSV of :func:`write_metrics` (first column the image or volume id) as ``{id: {metric: value}}``.

    Raises:
        ValueError: naming ``path`` when it has no rows.
    """
    rows = read_rows(path)
    if not rows:
        raise ValueError(f"{path}: no per-image rows")
    key = next(iter(rows[0]))
    return {row[key]: {name: float(value) for name, value in row.items() if name != key} for row in rows}


def _markdown_row(cells: Sequence[Any]) -> str:
    return "| " + " | ".join(map(str, cells)) + " |"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub Markdown table, without a final newline.

    Args:
        header: The column labels.
        rows: The cells of each row, as they are shown (bold marked by the caller).
        align: ``l`` or ``r`` per column; default: the first column left, the others right.
    """
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"markdown_table: {len(header)} columns, {len(align)} alignments ({align!r})")
    rule = "|" + "".join("---|" if side == "l" else "---:|" for side in align)
    return "\n".join([_markdown_row(header), rule, *(_markdown_row(cells) for cells in rows)])


def numbered(notes: Iterable[str]) -> list[str]:
    """``notes`` as a numbered Markdown list: ``1. ...``, ``2. ...``."""
    return [f"{index}. {note}" for index, note in enumerate(notes, 1)]


def latex_table(
    caption: str,
    header: Sequence[str],
    rows: Iterable[Sequence[Any]],
    label: str | None = None,
    notes: Sequence[str] = (),
) -> str:
    """A LaTeX ``table`` with booktabs rules: the first column left, the others right, ``notes`` in small print below.

    Every text is written as given: the caller escapes it (:func:`lossbench.core.specs.tex_escape`).
    """
    lines = [r"\begin{table}[ht]", r"\centering", rf"\caption{{{caption}}}"]
    if label is not None:
        lines.append(rf"\label{{{label}}}")
    lines += [
        r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
        r"\toprule",
        " & ".join(header) + r" \\",
        r"\midrule",
        *(" & ".join(map(str, cells)) + r" \\" for cells in rows),
        r"\bottomrule",
        r"\end{tabular}",
    ]
    if notes:
        lines += [r"\par\smallskip\footnotesize", *(note + r"\\" for note in notes)]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def write_lines(path: str | Path, lines: Iterable[str]) -> None:
    """Write ``lines``, each ended by a newline, to ``path``."""
    Path(path).write_text("\n".join(lines) + "\n")


def save_figure(figure: Any, paths: Iterable[str | Path], close: bool = True) -> None:
    """Save a Matplotlib ``figure`` to every path (the format follows the suffix), folders made if missing; close it.

    PDFs get no creation date, so that reruns write the same bytes.
    """
    for path in paths:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=FIGURE_DPI, metadata={"CreationDate": None} if Path(path).suffix == ".pdf" else None)
    if close:
        # Deferred: pyplot only where a figure is saved (its caller has chosen the backend already).
        import matplotlib.pyplot as plt

        plt.close(figure)
