import logging
from pathlib import Path

import numpy as np
import pytest
import yaml

from lossbench.data.valset import resolve_image_id
from lossbench.report.figures import comparison_figure, fit_box

MRI_IDS = ["file_b_s000", "file_b_s001", "file_b_s002", "file_a_s000", "file_a_s001"]


def test_an_index_picks_the_middle_slice_of_the_nth_volume_in_sorted_order():
    assert resolve_image_id(MRI_IDS, 0, "val.h5") == "file_a_s001"
    assert resolve_image_id(MRI_IDS, 1, "val.h5") == "file_b_s001"


def test_an_index_picks_the_nth_photograph():
    assert resolve_image_id(["kodim02", "kodim01", "kodim10"], 2, "val.h5") == "kodim10"


def test_an_id_is_used_as_it_is_and_unknown_ones_are_named():
    assert resolve_image_id(MRI_IDS, "file_b_s002", "val.h5") == "file_b_s002"
    with pytest.raises(ValueError, match=r"val\.h5: no validation image 'file_c_s000'"):
        resolve_image_id(MRI_IDS, "file_c_s000", "val.h5")
    with pytest.raises(
        ValueError, match=r"val\.h5: figure image index 2 is out of range: the validation set has 2 volumes"
    ):
        resolve_image_id(MRI_IDS, 2, "val.h5")


def test_a_box_reaching_past_the_image_is_clipped_with_a_warning_and_the_crop_figure_is_drawn(tmp_path, caplog):
    # A narrow fastMRI brain volume gives a W × W image: [100, 100, 120, 120] reaches past 213 × 213.
    with caplog.at_level(logging.WARNING, logger="lossbench.report.figures"):
        box = fit_box([100, 100, 120, 120], 213, 213, "figures.fig_6_15.box")
    assert box == [100, 100, 113, 113]
    assert (
        "figures.fig_6_15.box: box [100, 100, 120, 120] (left, top, width, height) reaches past the 213×213 validation"
        " image; clipped to [100, 100, 113, 113]" in caplog.text
    )
    panels = [
        (label, np.full((1, 213, 213), value, np.float32)) for label, value in (("Input", 0.2), ("Reference", 0.8))
    ]
    comparison_figure(panels, [tmp_path / "crop.png"], "crop", box, crop=True)
    assert (tmp_path / "crop.png").stat().st_size > 0


def test_a_box_inside_the_image_is_kept_and_one_starting_outside_it_is_a_one_line_error(caplog):
    with caplog.at_level(logging.WARNING, logger="lossbench.report.figures"):
        assert fit_box([48, 36, 80, 80], 176, 176, "figures.fig_6_15.box") == [48, 36, 80, 80]
    assert not caplog.records
    with pytest.raises(
        ValueError,
        match=(
            r"^figures\.fig_6_15\.box \(image b_s001\): box \[213, 0, 20, 20\] \(left, top, width, height\) starts"
            r" outside the 213×200 validation image; expected left < 213 and top < 200$"
        ),
    ):
        fit_box([213, 0, 20, 20], 213, 200, "figures.fig_6_15.box (image b_s001)")


def test_the_paper_configs_brain_boxes_fit_the_narrowest_fastmri_brain_images():
    # fastMRI's FLAIR brain scans are as narrow as 203 columns, cropped to 203 × 203 (fastmri_files.crop_side).
    figures = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "paper.yaml").read_text())["figures"]
    boxes = {name: spec["box"] for name, spec in figures.items() if spec["task"] == "brain" and "box" in spec}
    assert boxes and all(fit_box(box, 203, 203, name) == box for name, box in boxes.items())


def test_curves_have_integer_epoch_ticks_an_input_baseline_and_a_legend_clear_of_the_panels(tmp_path, monkeypatch):
    from lossbench.report import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, paths: saved.append(figure))

    def curves(epochs, psnr):
        written = {}
        for loss, offset in (("l1", 0.0), ("l2", 0.5)):
            rows = [
                f"{epoch},{0.1 / epoch + offset},{0.12 / epoch + offset},{psnr(epoch) - offset / 100},1.0"
                for epoch in epochs
            ]
            written[loss] = tmp_path / f"{loss}.csv"
            written[loss].write_text("epoch,train_loss,val_loss,val_psnr,seconds\n" + "\n".join(rows) + "\n")
        return written

    # A one-epoch run (the tiny configuration's) as well: its narrow x range must not give fractional ticks either.
    (tmp_path / "input.csv").write_text("image,psnr\na,19.47\nb,19.49\n")
    plots.curves_figure(
        curves([1], lambda epoch: 19.489), ["unused.png"], "One epoch", input_metrics=tmp_path / "input.csv"
    )
    (tmp_path / "input.csv").write_text("image,psnr\na,20.0\nb,22.0\n")
    plots.curves_figure(
        curves([1, 2, 3], lambda epoch: 24 + epoch), ["unused.png"], "Curves", input_metrics=tmp_path / "input.csv"
    )
    one_epoch, figure = saved
    for shown, last in ((one_epoch, 1), (figure, 3)):
        shown.canvas.draw()
        for axis in shown.axes:
            ticks = [tick for tick in axis.get_xticks() if 1 <= tick <= last]
            assert ticks and all(float(tick).is_integer() for tick in ticks), (
                f"{axis.get_title()}: epoch ticks {list(axis.get_xticks())}"
            )
    # PSNRs within 0.02 dB are labelled in dB, not as an offset ("+1.948e1") plus thousandths.
    assert one_epoch.axes[-1].yaxis.get_offset_text().get_text() == ""
    (baseline,) = [line for line in figure.axes[-1].get_lines() if line.get_label() == "input (no restoration)"]
    assert baseline.get_linestyle() == "--" and list(baseline.get_ydata()) == [21.0, 21.0]
    # Inside the panel even where the curves start at the input's PSNR, not on its frame.
    (tmp_path / "input.csv").write_text("image,psnr\na,20.18\nb,20.18\n")
    plots.curves_figure(
        curves([1, 2], lambda epoch: 20.5 + 6.5 * (epoch - 1)),
        ["unused.png"],
        "From the input",
        input_metrics=tmp_path / "input.csv",
    )
    low, high = saved[-1].axes[-1].get_ylim()
    assert low < 20.18 - 0.02 * (high - low)
    (legend,) = figure.legends
    assert [text.get_text() for text in legend.get_texts()][-1] == "input (no restoration)"
    lowest_panel = min(axis.get_tightbbox().y0 for axis in figure.axes)
    assert legend.get_window_extent().y1 <= lowest_panel, "the legend overlaps a panel"


def _curve(path, rows, metrics=("l1", "flip")):
    """A curve.csv of ``rows`` (epoch, step, train_loss, val_loss, val_psnr, *metric values)."""
    header = [
        "epoch",
        "step",
        "train_loss",
        "val_loss",
        "val_psnr",
        *(f"val_{name}" for name in metrics),
        "skipped",
        "seconds",
    ]
    path.write_text(",".join(header) + "\n" + "".join(",".join(map(str, [*row, 0, 1.0])) + "\n" for row in rows))
    return path


def test_the_baselines_come_from_the_images_the_curves_score(tmp_path, monkeypatch):
    from lossbench.report import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, paths: saved.append(figure))
    # The validation scores the first 2 of 3 images; the third, much easier, must not move the baseline.
    (tmp_path / "input.csv").write_text("image,l1,psnr,flip\na,0.10,20.0,0.30\nb,0.12,21.0,0.34\nc,0.01,40.0,0.02\n")
    curves = {
        "l1": _curve(tmp_path / "l1.csv", [[1, 4, 0.09, 0.08, 22.0, 0.07, 0.25], [2, 8, 0.05, 0.06, 24.0, 0.05, 0.22]]),
        "adaptive": _curve(
            tmp_path / "adaptive.csv", [[1, 4, 0.5, 0.4, 21.0, 0.09, 0.28], [2, 8, -1.6, -1.5, 23.0, 0.06, 0.21]]
        ),
    }
    assert plots.input_baseline(tmp_path / "input.csv", 2) == pytest.approx({"l1": 0.11, "psnr": 20.5, "flip": 0.32})
    plots.curves_figure(curves, ["unused.png"], "Curves", input_metrics=tmp_path / "input.csv", val_images=2)
    (curves_shown,) = saved
    psnr_panel = next(axis for axis in curves_shown.axes if axis.get_title().startswith("Validation PSNR"))
    (baseline,) = [line for line in psnr_panel.get_lines() if line.get_label() == "input (no restoration)"]
    assert list(baseline.get_ydata()) == [20.5, 20.5]
    # Each loss on its own axis: the adaptive loss's negative NLL cannot flatten l1's curve.
    loss_panels = {axis.get_title(): axis for axis in curves_shown.axes if axis.get_title().endswith(": loss")}
    assert set(loss_panels) == {"l1: loss", "Adaptive: loss"}
    low, high = loss_panels["l1: loss"].get_ylim()
    assert low > 0.04 and high < 0.1  # l1's own range (0.05-0.09), not one shared with the adaptive loss's -1.6


def test_the_race_draws_every_metric_per_step_with_the_own_loss_thick(tmp_path, monkeypatch):
    from lossbench.registry import PACKAGE
    from lossbench.report import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, paths: saved.append(figure))
    (tmp_path / "input.csv").write_text("image,l1,psnr,flip\na,0.10,20.0,0.30\nb,0.12,21.0,0.34\n")
    curves = {
        "l1": _curve(tmp_path / "l1.csv", [[1, 4, 0.09, 0.08, 22.0, 0.07, 0.25], [2, 8, 0.05, 0.06, 24.0, 0.05, 0.22]]),
        "flip": _curve(tmp_path / "flip.csv", [[1, 4, 0.3, 0.3, 21.0, 0.09, 0.28], [2, 8, 0.2, 0.2, 23.0, 0.06, 0.21]]),
    }
    plots.race_figure(
        curves,
        ["unused.png"],
        "Race",
        PACKAGE.metric_rows(["l1", "psnr", "flip"]),
        {"l1": "l1", "flip": "flip"},
        input_metrics=tmp_path / "input.csv",
    )
    (race,) = saved
    panels = {axis.get_title().split(" (")[0]: axis for axis in race.axes if axis.get_title()}
    assert set(panels) == {"1000·l1", "PSNR", "FLIP"}  # only the metrics the curves hold (val_psnr is always there)
    flip_lines = [line for line in panels["FLIP"].get_lines() if line.get_label() != "input"]
    assert [list(line.get_xdata()) for line in flip_lines] == [[4, 8], [4, 8]]  # against the training step
    widths = {tuple(line.get_ydata()): line.get_linewidth() for line in flip_lines}
    assert widths[(0.28, 0.21)] > widths[(0.25, 0.22)]  # FLIP's own line is thick
    (l1_input,) = [line for line in panels["1000·l1"].get_lines() if line.get_label() == "input"]
    assert list(l1_input.get_ydata()) == pytest.approx([110.0, 110.0])  # on the table's scale, 1000·l1
    assert [text.get_text() for text in race.legends[0].get_texts()] == ["l1", "FLIP", "input (no restoration)"]


def test_the_race_of_curves_without_validation_metrics_names_what_is_missing(tmp_path, monkeypatch):
    from lossbench.registry import PACKAGE
    from lossbench.report import plots

    saved = []
    monkeypatch.setattr(plots, "save_figure", lambda figure, paths: saved.append(figure))
    plain = tmp_path / "l1.csv"  # a model trained before validation metrics: PSNR only
    plain.write_text("epoch,step,train_loss,val_loss,val_psnr,skipped,seconds\n1,4,0.1,0.1,22.0,0,1.0\n")
    plots.race_figure({"l1": plain}, ["unused.png"], "Race", PACKAGE.metric_rows(["l1", "psnr", "flip"]), {})
    (race,) = saved
    assert [axis.get_title().split(" (")[0] for axis in race.axes if axis.get_title()] == ["PSNR"]
    assert (
        "not in the curves (trained without them as validation metrics): 1000·l1, 1000·l2, MS-SSIM, LPIPS, FLIP"
        in race._suptitle.get_text()
    )
