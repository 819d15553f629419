"""lossbench.core.io: the one place where CSV rows, metric CSVs, Markdown and LaTeX tables and figures are written."""

import pytest

from lossbench.core import io


def test_rows_keep_the_line_terminator_their_file_has_always_had(tmp_path):
    io.write_rows(tmp_path / "lf.csv", [{"a": "1", "b": "x,y"}], ["a", "b"])
    assert (tmp_path / "lf.csv").read_bytes() == b'a,b\n1,"x,y"\n'
    io.write_rows(tmp_path / "crlf.csv", [[1, 2]], ["a", "b"], terminator=io.CRLF)
    assert (tmp_path / "crlf.csv").read_bytes() == b"a,b\r\n1,2\r\n"
    io.write_rows(tmp_path / "sub" / "header_only.csv", [], ["a", "b"])
    assert io.read_csv(tmp_path / "sub" / "header_only.csv") == (["a", "b"], [])
    assert io.read_rows(tmp_path / "lf.csv") == [{"a": "1", "b": "x,y"}]
    assert io.read_lists(tmp_path / "crlf.csv") == [["a", "b"], ["1", "2"]]


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path):
    path = tmp_path / "curve.csv"
    io.write_rows(path, [{"epoch": 1}], ["epoch"], atomic=True)
    with pytest.raises(ValueError):
        io.write_rows(path, [{"epoch": 2, "unknown": 3}], ["epoch"], atomic=True)
    assert path.read_text() == "epoch\n1\n" and [p.name for p in tmp_path.iterdir()] == ["curve.csv"]


def test_metric_csvs_round_trip_with_eight_significant_digits(tmp_path):
    path = tmp_path / "metrics.csv"
    io.write_metrics(path, [{"image": "a", "psnr": 20.123456789, "l1": 0.5}, {"image": "b", "psnr": 30.0, "l1": 1e-9}])
    assert path.read_bytes() == b"image,psnr,l1\r\na,20.123457,0.5\r\nb,30,1e-09\r\n"
    assert io.read_metrics(path) == {"a": {"psnr": 20.123457, "l1": 0.5}, "b": {"psnr": 30.0, "l1": 1e-9}}
    (tmp_path / "empty.csv").write_text("image,psnr\n")
    with pytest.raises(ValueError, match="empty.csv: no per-image rows"):
        io.read_metrics(tmp_path / "empty.csv")


def test_markdown_and_latex_tables():
    assert io.markdown_table(["Metric", "a", "b"], [["PSNR", "**1**", 2]]) == (
        "| Metric | a | b |\n|---|---:|---:|\n| PSNR | **1** | 2 |"
    )
    assert io.markdown_table(["x", "y"], [], "ll") == "| x | y |\n|---|---|"
    with pytest.raises(ValueError, match="2 columns, 3 alignments"):
        io.markdown_table(["x", "y"], [], "lll")
    assert io.numbered(["one", "two"]) == ["1. one", "2. two"]
    assert io.latex_table("Cap", ["M", "a"], [["x", "1"]], label="tab:t", notes=["1. n"]) == (
        "\\begin{table}[ht]\n\\centering\n\\caption{Cap}\n\\label{tab:t}\n\\begin{tabular}{lr}\n\\toprule\n"
        "M & a \\\\\n\\midrule\nx & 1 \\\\\n\\bottomrule\n\\end{tabular}\n\\par\\smallskip\\footnotesize\n1. n\\\\\n"
        "\\end{table}\n"
    )


def test_a_saved_pdf_has_no_creation_date_so_reruns_write_the_same_bytes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def draw(folder):
        figure, axis = plt.subplots(figsize=(2, 2))
        axis.plot([0, 1], [1, 0])
        io.save_figure(figure, [folder / "f.pdf", folder / "f.png"])
        assert not plt.fignum_exists(figure.number)

    draw(tmp_path / "one")
    draw(tmp_path / "two")
    assert b"CreationDate" not in (tmp_path / "one" / "f.pdf").read_bytes()
    for name in ("f.pdf", "f.png"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
