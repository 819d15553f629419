import csv

import pytest

from lossbench.report import paper
from lossbench.report.table_files import to_latex, to_markdown, write_all
from lossbench.report.tables import build_table

FIELDS = ["image", "l1", "l2", "psnr"]


def _metrics_csv(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        writer.writerows(rows)
    return path


@pytest.fixture
def files(tmp_path):
    return {
        "input": _metrics_csv(tmp_path / "input.csv", [["a", 0.08, 0.0096, 20.2], ["b", 0.078, 0.0096, 20.1]]),
        "l1": _metrics_csv(tmp_path / "l1.csv", [["a", 0.025, 0.0011, 29.8], ["b", 0.024, 0.0011, 29.9]]),
        "l2": _metrics_csv(tmp_path / "l2.csv", [["a", 0.019, 0.0007, 32.0], ["b", 0.018, 0.0007, 32.1]]),
    }


def test_means_are_scaled_and_best_per_row_is_bold(files):
    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]], "l2": [files["l2"]]})
    assert table.cells["l1"]["input"].mean == pytest.approx(79.0)
    assert table.cells["l1"]["l2"].mean == pytest.approx(18.5)
    assert table.cells["psnr"]["l2"].mean == pytest.approx(32.05)
    for metric in ("l1", "l2", "psnr"):
        assert table.cells[metric]["l2"].bold and not table.cells[metric]["l1"].bold
    assert not table.cells["l1"]["input"].bold  # the degraded input is not a competitor


def test_higher_is_better_for_psnr(files, tmp_path):
    worse = _metrics_csv(tmp_path / "worse.csv", [["a", 0.01, 0.0001, 10.0], ["b", 0.01, 0.0001, 10.0]])
    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]], "l2": [worse]})
    assert table.cells["l1"]["l2"].bold  # lowest l1
    assert table.cells["psnr"]["l1"].bold  # highest PSNR


def test_ties_at_display_precision_are_all_bold(files, tmp_path):
    twin = _metrics_csv(tmp_path / "twin.csv", [["a", 0.0190001, 0.0007, 32.0], ["b", 0.018, 0.0007, 32.1]])
    table = build_table("table_6_1", files["input"], {"l1": [twin], "l2": [files["l2"]]})
    assert table.cells["l1"]["l1"].bold and table.cells["l1"]["l2"].bold


def test_missing_losses_and_metrics_stay_empty_with_footnotes(files):
    table = build_table("table_6_3", files["input"], {"l1": [files["l1"]]})
    markdown = to_markdown(table)
    assert table.cells["msssim"]["l1"].mean is None
    assert "| MS-SSIM ↑ |  |  |" in markdown
    assert any(note.startswith("MS-SSIM: not computed") for note in table.footnotes)
    assert any(note.startswith("FLIP: no model trained") for note in table.footnotes)
    assert "| Metric | Masked |" in markdown


def test_markdown_and_latex_mark_the_best_value(files):
    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]], "l2": [files["l2"]]})
    assert "**18.50**" in to_markdown(table)
    latex = to_latex(table)
    assert r"\textbf{18.50}" in latex and r"\begin{tabular}" in latex and r"$1000\cdot l_1$" in latex


def test_several_seeds_give_mean_and_std(files, tmp_path):
    other = _metrics_csv(tmp_path / "l2b.csv", [["a", 0.021, 0.0009, 31.0], ["b", 0.020, 0.0009, 31.1]])
    table = build_table("table_6_1", files["input"], {"l2": [files["l2"], other]})
    cell = table.cells["l1"]["l2"]
    assert cell.seeds == 2 and cell.mean == pytest.approx(19.5) and cell.std == pytest.approx(1.41421356, rel=1e-6)
    assert "19.50 ± 1.41" in to_markdown(table)


def test_written_files_and_paper_comparison(files, tmp_path):
    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]], "l2": [files["l2"]]})
    paths = write_all(table, tmp_path / "out" / "table_6_1")
    assert [p.name for p in paths] == [
        "table_6_1.csv",
        "table_6_1.md",
        "table_6_1.tex",
        "table_6_1_vs_paper.csv",
        "table_6_1_vs_paper.md",
    ]
    with open(paths[0]) as handle:
        rows = {row["metric"]: row for row in csv.DictReader(handle)}
    assert rows["l1"]["l2"] == "18.5000" and rows["l1"]["best"] == "l2" and rows["msssim"]["l1"] == ""
    with open(paths[3]) as handle:
        comparison = {(row["metric"], row["model"]): row for row in csv.DictReader(handle)}
    assert comparison[("l1", "input")]["paper"] == "78.22"
    assert comparison[("psnr", "l2")]["ours"] == "32.05" and comparison[("psnr", "l2")]["paper"] == "32.05"
    assert "32.05 (32.05)" in paths[4].read_text()


def test_published_tables_are_complete():
    for name in ("table_6_1", "table_6_3", "table_6_4"):
        published = paper.table(name)
        assert list(published) == ["l1", "l2", "psnr", "msssim", "lpips", "flip"]
        assert all(len(row) == 7 for row in published.values())
    assert paper.table("table_6_1")["l1"]["input"] == 78.22
    assert paper.table("table_6_5")["lpips_l2"]["adaptive"] == pytest.approx(19 / 58, abs=1e-4)
    for name in ("table_6_2", "table_6_5"):
        published = paper.table(name)
        for row in published:
            for column in published:
                if row != column and not {row, column} == {"lpips_l2", "adaptive"}:
                    assert published[row][column] + published[column][row] == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="no published table 'table_9_9'"):
        paper.table("table_9_9")


def _flip_csv(path, value):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows([["image", "flip"], ["a", value], ["b", value]])
    return path


def test_thesis_copy_error_in_noisy_flip_is_flagged_not_compared(tmp_path):
    """Thesis Table 6.1 prints the Noisy LPIPS value 0.4593 as Noisy FLIP too: shown with ‡ (not significance's †),
    never differenced."""
    table = build_table(
        "table_6_1", _flip_csv(tmp_path / "input.csv", 0.36), {"flip": [_flip_csv(tmp_path / "flip.csv", 0.11)]}
    )
    paths = write_all(table, tmp_path / "table_6_1")
    with open(paths[3]) as handle:
        comparison = {(row["metric"], row["model"]): row for row in csv.DictReader(handle)}
    flagged = comparison[("flip", "input")]
    assert flagged["paper"] == "0.4593" and flagged["difference"] == "" and "copy" in flagged["note"]
    assert comparison[("flip", "flip")]["difference"] == "-0.0021" and comparison[("flip", "flip")]["note"] == ""
    markdown = paths[4].read_text()
    assert (
        "0.3600 (0.4593‡)" in markdown and "‡ FLIP ↓, Noisy:" in markdown and "†" not in markdown
    )  # ‡ errata, † significance
    assert "Only the input column (Noisy) is expected to match" in markdown


def test_comparison_of_a_model_the_thesis_lacks_leaves_the_paper_cell_empty(files, monkeypatch):
    from lossbench.report import table_files

    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]]})
    monkeypatch.setattr(table_files.paper, "table", lambda name: {"l1": {"input": 78.22}})
    rows = {(row["metric"], row["model"]): row for row in table_files.comparison_rows(table)}
    assert rows[("l1", "l1")]["paper"] == "" and rows[("l1", "l1")]["difference"] == ""
    assert rows[("l1", "input")]["difference"] == "+0.78"
    assert "(—)" in table_files.comparison_markdown(table)


def test_values_not_significantly_different_from_the_best_carry_a_dagger(tmp_path):
    images = [f"i{k}" for k in range(8)]
    noise = [0.3, -0.2, 0.1, -0.4, 0.2, 0.0, -0.1, 0.3]

    def psnr_csv(name, base, jitter):
        return _metrics_csv(
            tmp_path / f"{name}.csv", [[image, 0.02, 0.001, base + jitter * n] for image, n in zip(images, noise)]
        )

    inputs = psnr_csv("input", 20.0, 1.0)
    models = {
        "l1": [psnr_csv("l1", 30.0, 1.0)],
        "l2": [psnr_csv("l2", 30.05, 0.2)],
        "flip": [psnr_csv("flip", 25.0, 1.0)],
    }
    table = build_table("table_6_1", inputs, models)
    row = table.cells["psnr"]
    assert row["l2"].bold and not row["l2"].tied
    assert row["l1"].tied and not row["flip"].tied
    markdown = to_markdown(table)
    assert row["l1"].text(2) + "†" in markdown and any(
        note.startswith("†: not significantly different") for note in table.footnotes
    )
    assert r"$^\dagger$" in to_latex(table)


def test_row_labels_show_the_better_direction_and_companion_tables_their_nature(tmp_path):
    fastmri = [["vol", "nmse", "psnr", "ssim"], ["v1", 0.05, 30.0, 0.8], ["v2", 0.04, 31.0, 0.82]]
    for name in ("input", "l1"):
        with open(tmp_path / f"{name}.csv", "w", newline="") as handle:
            csv.writer(handle).writerows(fastmri)
    table = build_table("table_6_3", tmp_path / "input.csv", {"l1": [tmp_path / "l1.csv"]}, suite="fastmri")
    markdown = to_markdown(table)
    assert markdown.startswith("**fastMRI metrics, knee (not in the thesis).**")
    assert "| NMSE ↓ |" in markdown and "| PSNR ↑ |" in markdown
    latex = to_latex(table)
    assert r"\label{tab:table_6_3_fastmri}" in latex and r"PSNR $\uparrow$" in latex


def test_configured_loss_parameters_are_stated_in_a_footnote(files):
    params = {"l1": {}, "l2": {}, "lpips_l2": {"lpips_weight": 1.0, "l2_weight": "balance"}}
    table = build_table("table_6_1", files["input"], {"l1": [files["l1"]], "l2": [files["l2"]]}, loss_params=params)
    assert not any(note.startswith("Loss parameters") for note in table.footnotes)  # LPIPS+l2 trained no model here
    table = build_table(
        "table_6_1", files["input"], {"l1": [files["l1"]], "lpips_l2": [files["l2"]]}, loss_params=params
    )
    assert "Loss parameters: LPIPS+l2: lpips_weight 1.0, l2_weight balance." in table.footnotes


def _volumes_csv(path, values):
    """Per-slice PSNRs (and a FLIP) of ``values`` (volumes, slices) with the workflow's slice ids."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FIELDS, "flip"])
        writer.writerows(
            [f"vol{v}_s{s:03d}", 0.05, 0.005, value, 0.2] for v, row in enumerate(values) for s, value in enumerate(row)
        )
    return path


def test_a_bold_cell_never_carries_the_dagger_of_a_tie_with_the_best(tmp_path):
    # Six images: a and b tie at the shown precision (both bold), c is close enough not to differ
    # significantly: a bold cell never also shows †, c's does.
    import numpy as np

    rng = np.random.default_rng(0)
    base = np.array([29.2, 30.4, 31.1, 28.7, 30.0, 29.4])  # mean 29.80: l1 and l2 both show 29.80
    images = [f"img{i}" for i in range(6)]

    def model(name, values):
        return [
            _metrics_csv(
                tmp_path / f"{name}.csv", [[image, 0.02, 0.001, value] for image, value in zip(images, values)]
            )
        ]

    noise = rng.normal(0, 0.3, 6)
    # l2 is the best; l1 trails it by a thousandth of a dB give or take noise: bold (the same shown value) and tied.
    models = {
        "l1": model("a", base + 0.001 + noise * 0.01),
        "l2": model("b", base + 0.002),
        "flip": model("c", base - 0.1 + noise),
    }
    table = build_table(
        "table_6_1", _metrics_csv(tmp_path / "input.csv", [[image, 0.08, 0.01, 20.0] for image in images]), models
    )
    row = table.cells["psnr"]
    assert row["l1"].bold and row["l2"].bold and row["l1"].tied and not row["l1"].dagger
    assert row["flip"].tied and row["flip"].dagger
    psnr_line = next(line for line in to_markdown(table).splitlines() if line.startswith("| PSNR"))
    assert "**†" not in psnr_line and "** †" not in psnr_line and psnr_line.count("†") == 1
    assert any(
        note.startswith("†: not significantly different") and "n = 6 images, 1 seed" in note for note in table.footnotes
    )


def test_mri_tables_test_volumes_and_say_why_they_do_not(tmp_path):
    from lossbench.report.tables import subject

    settings = {"data": {"source": "synthetic", "val": {"volumes": 3, "slices": 3}}}
    about = subject("knee", "mri_singlecoil", settings)
    assert (
        about.caption
        == "MRI reconstruction, single-coil knee: metrics of each model on synthetic fastMRI-format knee volumes (3"
        " volumes × 3 slices), not fastMRI's (the task of thesis Table 6.3, not its data)."
    )
    # 3 volumes × 3 slices: 9 rows, but 3 units, too few to test however far apart the models are.
    inputs = _volumes_csv(tmp_path / "input.csv", [[20.0] * 3] * 3)
    models = {
        "l1": [_volumes_csv(tmp_path / "l1.csv", [[25.0, 25.1, 25.2]] * 3)],
        "l2": [_volumes_csv(tmp_path / "l2.csv", [[30.0, 30.1, 30.3]] * 3)],
    }
    table = build_table(about, inputs, models, evaluation={"flip": {"ppd": 22.3}, "flip_gray_mode": "gray_thesis"})
    assert not any(cell.tied for row in table.cells.values() for cell in row.values())
    assert (
        "No significance marks: n = 3 volumes (9 slices averaged per volume), 1 seed, fewer than the 5 independent"
        " volumes a test needs; differences between the losses are not tested." in table.footnotes
    )
    assert (
        "FLIP seen at 22.3 pixels per degree, grayscale reading gray_thesis (evaluation.flip; the thesis: 67.0)."
        in table.footnotes
    )


def test_demo_captions_say_their_data_are_not_the_thesiss():
    from lossbench.report.tables import subject

    embedded = subject(
        "denoise", "rgb_denoise", {"data": {"source": "embedded", "val": ["astronaut", "coffee", "grace_hopper"]}}
    )
    assert (
        "ImageNet" not in embedded.caption
        and "3 photographs bundled with scikit-image and matplotlib (astronaut, coffee, grace_hopper), not Kodak"
        in embedded.caption
    )
    kodak = subject("denoise", "rgb_denoise", {"data": {"source": "imagenet"}})
    assert kodak.caption.endswith("(thesis Table 6.1, ImageNet → Kodak).")
    fastmri = subject("brain", "mri_multicoil", {"data": {"source": "fastmri"}})
    assert fastmri.caption.endswith("(thesis Table 6.4).")
