"""What `python -m lossbench.infer` does with inputs and outputs that used to lose or damage data (issue 27).

Colliding ids, non-finite k-space, an output folder that is (or holds) the inputs, images beyond the
pixel budget, a run stopped midway, 16-bit colour, and an output folder that is read-only or full.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import struct
import zlib

import h5py
import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from lossbench import infer
from lossbench.data.images import DuplicateImageIdError, list_images, read_image, read_rgb
from lossbench.pipeline.job_settings import run_settings
from lossbench.train import loop as training

from test_infer import _as_test_file, _error, denoise_model, knee_model, tiny  # noqa: F401 (fixtures)


@pytest.fixture
def photo(denoise_model):
    """``photo(folder, name, source="coffee")``: a validation photograph of ``denoise_model`` copied to ``folder/name``
    (its suffix picks the format)."""

    def copy(folder, name, source="coffee"):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.open(denoise_model[1] / "val" / f"{source}.png").convert("RGB").save(path)
        return path

    return copy


def _args(model, input_dir, out_dir, *more):
    return ["--model", str(model), "--input", str(input_dir), "--out", str(out_dir), "--device", "cpu", *more]


def _files(folder):
    """Every name in ``folder``, hidden ones (temporary files) included."""
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# --- Colliding ids -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, second, output",
    [
        ("a.jpg", "a.png", "a.png"),
        ("sub/x.png", "sub__x.png", "sub__x.png"),
        ("B.PNG", "B.tif", "B.png"),
    ],
)
def test_inputs_written_as_one_output_are_refused_naming_both(denoise_model, tmp_path, first, second, output, photo):
    model, _ = denoise_model
    for name in (first, second):
        photo(tmp_path / "in", name)
    photo(tmp_path / "in", "other.png")
    message = _error(_args(model, tmp_path / "in", tmp_path / "out"))
    paths = sorted([tmp_path / "in" / first, tmp_path / "in" / second])
    assert (
        message == f"error: {paths[0]} and {paths[1]} would both be written as {tmp_path / 'out' / output}; rename one"
    )
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_ids_differing_in_case_only_are_refused(denoise_model, tmp_path, photo):
    # Photo.png and photo.png are one file on macOS's and Windows' default file systems.
    model, _ = denoise_model
    photo(tmp_path / "in", "Photo.jpg")
    photo(tmp_path / "in", "photo.png")
    message = _error(_args(model, tmp_path / "in", tmp_path / "out"))
    assert (
        message
        == f"error: {tmp_path / 'in' / 'Photo.jpg'} and {tmp_path / 'in' / 'photo.png'} would both be written as"
        f" {tmp_path / 'out' / 'Photo.png'} on a case-insensitive file system (photo.png is the same name there);"
        " rename one"
    )


def test_list_images_refuses_a_duplicate_id_instead_of_dropping_a_file(tmp_path):
    # Every user of list_images (validation sets too) would otherwise lose one of the two silently.
    for name in ("a.png", "a.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / name)
    with pytest.raises(DuplicateImageIdError, match=r"a\.jpg and .*a\.png have the same id 'a'") as error:
        list_images(tmp_path)
    assert (error.value.first, error.value.second, error.value.image_id) == (
        tmp_path / "a.jpg",
        tmp_path / "a.png",
        "a",
    )


# --- Non-finite data -----------------------------------------------------------------------------


def test_nan_kspace_is_refused_naming_file_and_slice(knee_model, tmp_path):
    model, root = knee_model
    (tmp_path / "in").mkdir()
    for name in ("val_000.h5", "val_001.h5"):
        shutil.copy(root / "val" / name, tmp_path / "in" / name)
    with h5py.File(tmp_path / "in" / "val_001.h5", "r+") as file:
        kspace = file["kspace"][()]
        kspace[2, 10, 37] = np.nan  # one sampled value (the centre columns are always sampled) spoils the slice
        file["kspace"][...] = kspace
    message = _error(_args(model, tmp_path / "in", tmp_path / "out"))
    assert (
        message
        == f"error: {tmp_path / 'in' / 'val_001.h5'}: slice 2: the model's input has NaN or infinite values (the file's"
        " data has them)"
    )
    assert _files(tmp_path / "out") == ["val_000.h5"]  # the volume before it is complete and kept for a rerun


def test_nan_in_a_test_files_sampled_kspace_is_refused_naming_the_slice(knee_model, tmp_path):
    model, root = knee_model
    with h5py.File(root / "val" / "val_000.h5", "r") as full:
        width = full["kspace"].shape[-1]
    mask = np.zeros(width, dtype=bool)
    mask[width // 2 - 6 : width // 2 + 6] = True
    (tmp_path / "in").mkdir()
    _as_test_file(root / "val" / "val_000.h5", tmp_path / "in" / "test_000.h5", mask)
    with h5py.File(tmp_path / "in" / "test_000.h5", "r+") as file:
        kspace = file["kspace"][()]
        kspace[1, :, 0] = np.inf  # an unsampled column: ignored, as the mask drops it
        kspace[2, 5, width // 2] = np.nan
        file["kspace"][...] = kspace
    message = _error(_args(model, tmp_path / "in", tmp_path / "out"))
    assert (
        message == f"error: {tmp_path / 'in' / 'test_000.h5'}: slice 2: NaN or infinite values in the sampled k-space"
    )


def test_a_non_finite_or_failed_output_is_refused_naming_the_file(denoise_model, tmp_path, monkeypatch, photo):
    model, _ = denoise_model
    photo(tmp_path / "in", "a.png")
    _, spec = training.load_model(model, "cpu")
    monkeypatch.setattr(infer.folder, "load_model", lambda path, device: (lambda batch: batch * float("inf"), spec))
    assert (
        _error(_args(model, tmp_path / "in", tmp_path / "out"))
        == f"error: {tmp_path / 'in' / 'a.png'}: the model's output has NaN or infinite values (its input is finite)"
    )

    def out_of_memory(batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 6.40 GiB\nmore detail")

    monkeypatch.setattr(infer.folder, "load_model", lambda path, device: (out_of_memory, spec))
    assert (
        _error(_args(model, tmp_path / "in", tmp_path / "out"))
        == f"error: {tmp_path / 'in' / 'a.png'}: the model failed on it (CUDA out of memory. Tried to allocate 6.40"
        " GiB)"
    )
    assert _files(tmp_path / "out") == []


# --- Outputs apart from the inputs -------------------------------------------------------------


@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_the_input_folder_is_never_the_output_folder(knee_model, tmp_path, overwrite):
    model, root = knee_model
    shutil.copytree(root / "val", tmp_path / "data")
    before = (tmp_path / "data" / "val_000.h5").read_bytes()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    for out in (tmp_path / "data", tmp_path / "link", tmp_path / "data" / ".." / "data"):
        message = _error(_args(model, tmp_path / "data", out, *overwrite))
        assert (
            message
            == f"error: {out}: the output folder is the input folder {tmp_path / 'data'} (links resolved); give the"
            " outputs a folder apart from the inputs"
        )
    assert (tmp_path / "data" / "val_000.h5").read_bytes() == before  # the raw k-space is still there


def test_output_and_input_folders_may_not_nest_and_no_input_may_lie_in_the_output(denoise_model, tmp_path, photo):
    model, _ = denoise_model
    photo(tmp_path / "photos", "a.png")
    restored = tmp_path / "photos" / "restored"
    assert (
        _error(_args(model, tmp_path / "photos", restored))
        == f"error: {restored}: the output folder lies inside the input folder {tmp_path / 'photos'} (links resolved);"
        " give the outputs a folder apart from the inputs"
    )
    assert (
        _error(_args(model, tmp_path / "photos", tmp_path, "--overwrite"))
        == f"error: {tmp_path}: the output folder holds the input folder {tmp_path / 'photos'} (links resolved); give"
        " the outputs a folder apart from the inputs"
    )
    # An input that is a link into the output folder: restoring would replace it.
    photo(tmp_path / "out", "b.png")
    (tmp_path / "photos" / "b.png").symlink_to(tmp_path / "out" / "b.png")
    assert (
        _error(_args(model, tmp_path / "photos", tmp_path / "out", "--overwrite"))
        == f"error: {tmp_path / 'photos' / 'b.png'}: this input is {tmp_path / 'out' / 'b.png'}, inside the output"
        f" folder {tmp_path / 'out'}; give the outputs a folder apart from the inputs"
    )
    assert not restored.exists()


# --- Pixel budget ----------------------------------------------------------------------------


def _header_only_png(path, width, height):
    """A PNG whose header declares width × height RGB pixels and that has no pixel data."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IEND", b"")
    )
    return path


def test_images_beyond_the_pixel_budget_are_refused_from_their_header(denoise_model, tmp_path, monkeypatch, photo):
    model, _ = denoise_model
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # main raises it; restored after the test
    big = _header_only_png(tmp_path / "in" / "big.png", 10_000, 10_000)  # 100 MP, below PIL's bomb error (2 × 89.5 MP)
    photo(tmp_path / "in", "a.png")
    # Refused before decoding (it has no pixel data, which decoding would report) and before any output.
    assert (
        _error(_args(model, tmp_path / "in", tmp_path / "out"))
        == f"error: {big}: 10000×10000 is 100.0 megapixels, more than --max-pixels 50000000; raise it to restore this"
        " image"
    )
    assert not (tmp_path / "out").exists()
    # A budget the user raised beyond PIL's own limit (it refuses above 2 × 89.5 MP) is what counts:
    # the headers pass, and the run stops at the next check, an output of someone else's.
    _header_only_png(big, 20_000, 20_000)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "big.png").write_bytes(b"mine")
    assert _error(_args(model, tmp_path / "in", tmp_path / "out", "--max-pixels", "400000000")).startswith(
        f"error: {tmp_path / 'out' / 'big.png'} exists already"
    )


def test_the_pixel_budget_counts_width_times_height(denoise_model, tmp_path, photo):
    model, _ = denoise_model
    width, height = Image.open(photo(tmp_path / "in", "a.png")).size
    assert f"more than --max-pixels {width * height - 1}" in _error(
        _args(model, tmp_path / "in", tmp_path / "out", "--max-pixels", str(width * height - 1))
    )
    infer.main(_args(model, tmp_path / "in", tmp_path / "out", "--max-pixels", str(width * height)))
    assert _files(tmp_path / "out") == ["a.png"]


def test_a_pixel_budget_below_one_is_a_usage_error(denoise_model, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        infer.main(_args(denoise_model[0], tmp_path, tmp_path / "out", "--max-pixels", "0"))
    assert stop.value.code == 2 and capsys.readouterr().err.endswith(
        "error: --max-pixels 0 must be a positive number of pixels\n"
    )


# --- A stopped run resumes -------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_denoise_model(denoise_model, tiny):
    """A second denoising model (l2) trained on the data of ``denoise_model``."""
    _, root = denoise_model
    spec = run_settings(tiny, "denoise", "l2", 0)
    return training.run(
        spec,
        root / "train",
        root / "val.h5",
        root / "other_model",
        root / "other_checkpoints",
        device="cpu",
        threads=1,
        progress=False,
    )


def test_a_run_stopped_midway_resumes_and_keeps_only_this_models_outputs(
    denoise_model, other_denoise_model, tmp_path, capsys, photo
):
    model, _ = denoise_model
    for name in "abc":
        photo(tmp_path / "in", f"{name}.png")
    whole = (tmp_path / "in" / "b.png").read_bytes()
    (tmp_path / "in" / "b.png").write_bytes(whole[: len(whole) // 2])  # cut short inside its pixel data: decoding fails
    args = _args(model, tmp_path / "in", tmp_path / "out", "--sigma", "25")
    assert _error(args).startswith(f"error: {tmp_path / 'in' / 'b.png'}: cannot decode")
    assert _files(tmp_path / "out") == ["a.png"]  # complete (renamed into place), no temporary file
    kept = os.stat(tmp_path / "out" / "a.png")
    record = json.loads(Image.open(tmp_path / "out" / "a.png").text[infer.RECORD_KEY])
    assert record["sigma"] == 25 and record["seed"] == 0 and len(record["model"]) == len(record["input"]) == 64
    (tmp_path / "in" / "b.png").write_bytes(whole)
    capsys.readouterr()
    infer.main(args)  # the same command: no --overwrite needed
    assert capsys.readouterr().out == f"wrote 2 files to {tmp_path / 'out'}\n"
    assert _files(tmp_path / "out") == ["a.png", "b.png", "c.png"]
    assert os.stat(tmp_path / "out" / "a.png").st_ino == kept.st_ino  # a.png was kept, not written again
    # Another model, other settings or a changed input: the outputs are not theirs, nothing is skipped silently.
    expected = (
        f"error: {tmp_path / 'out' / 'a.png'} and 2 more exist already, not written from these inputs by this model and"
        " settings; pass --overwrite to replace them"
    )
    assert _error(_args(other_denoise_model, tmp_path / "in", tmp_path / "out", "--sigma", "25")) == expected
    assert _error(_args(model, tmp_path / "in", tmp_path / "out", "--sigma", "25", "--seed", "1")) == expected
    photo(tmp_path / "in", "a.png", source="astronaut")
    assert (
        _error(args)
        == f"error: {tmp_path / 'out' / 'a.png'} exists already, not written from these inputs by this model and"
        " settings; pass --overwrite to replace them"
    )
    infer.main(args + ["--overwrite"])
    assert capsys.readouterr().out.endswith(f"wrote 1 files to {tmp_path / 'out'}\n")  # b and c are this run's: kept


def test_a_rerun_on_fastmri_files_keeps_the_finished_volumes(knee_model, tmp_path, capsys):
    model, root = knee_model
    args = _args(model, root / "val", tmp_path / "out")
    infer.main(args)
    first = {name: (tmp_path / "out" / name).read_bytes() for name in _files(tmp_path / "out")}
    assert list(first) == ["val_000.h5", "val_001.h5"]
    with h5py.File(tmp_path / "out" / "val_000.h5", "r") as file:
        assert list(file) == ["reconstruction"] and set(json.loads(file.attrs[infer.RECORD_KEY])) == {"model", "input"}
    capsys.readouterr()
    infer.main(args)
    assert capsys.readouterr().out == f"wrote 0 files to {tmp_path / 'out'}\n"
    assert {name: (tmp_path / "out" / name).read_bytes() for name in _files(tmp_path / "out")} == first


# --- 16-bit colour ---------------------------------------------------------------------------


def _paeth(left, up, upper_left):
    estimate = left + up - upper_left
    distances = [np.abs(estimate - value) for value in (left, up, upper_left)]
    return np.where(
        (distances[0] <= distances[1]) & (distances[0] <= distances[2]),
        left,
        np.where(distances[1] <= distances[2], up, upper_left),
    )


#: Adam7's passes: (first column, first row, column step, row step).
_ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def _png16(path, samples, interlace=False):
    """A 16-bit PNG of ``samples`` (H, W, C) uint16, C = 1 to 4, its rows filtered by None, Sub, Up, Average and Paeth
    in turn.

    PIL writes no 16-bit colour PNG; this writer exercises every filter PIL's decoder undoes, and
    Adam7 interlacing, with the bytes per pixel of 16-bit samples.
    """
    channels = samples.shape[2]
    step = 2 * channels  # bytes per pixel, the filters' distance to "left"
    data = b""
    for column, row, column_step, row_step in _ADAM7 if interlace else [(0, 0, 1, 1)]:
        image = samples[row::row_step, column::column_step]
        if image.size == 0:
            continue
        rows = np.ascontiguousarray(image.astype(">u2")).reshape(image.shape[0], -1).view(np.uint8).astype(np.int64)
        previous = np.zeros_like(rows[0])
        for number, current in enumerate(rows):
            left = np.concatenate([np.zeros(step, np.int64), current[:-step]])
            upper_left = np.concatenate([np.zeros(step, np.int64), previous[:-step]])
            kind = number % 5
            prediction = [0, left, previous, (left + previous) // 2, _paeth(left, previous, upper_left)][kind]
            data += bytes([kind]) + ((current - prediction) % 256).astype(np.uint8).tobytes()
            previous = current

    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(
        ">IIBBBBB", samples.shape[1], samples.shape[0], 16, {1: 0, 2: 4, 3: 2, 4: 6}[channels], 0, 0, int(interlace)
    )
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(data)) + chunk(b"IEND", b"")
    )
    return path


@pytest.mark.parametrize("interlace", [False, True])
@pytest.mark.parametrize("channels", [3, 4, 2])
def test_16_bit_colour_png_is_read_at_16_bits(tmp_path, channels, interlace):
    samples = np.random.default_rng(channels).integers(0, 65536, size=(37, 53, channels), dtype=np.uint16)
    path = _png16(tmp_path / "deep.png", samples, interlace)
    colour = (
        samples[..., :3] if channels >= 3 else np.repeat(samples[..., :1], 3, axis=-1)
    )  # alpha dropped, grey repeated
    expected = colour.astype(np.float32) / np.float32(65535)
    image = read_rgb(path)
    assert image.dtype == np.float32 and image.shape == (37, 53, 3)
    np.testing.assert_array_equal(image, expected)  # every one of the 65536 levels, not the high byte's 256
    np.testing.assert_allclose(read_image(path, gray=True), expected @ np.array([0.299, 0.587, 0.114]), atol=1e-6)


def test_16_bit_colour_tiff_is_read_at_16_bits_and_other_formats_are_refused(tmp_path):
    samples = np.random.default_rng(0).integers(0, 65536, size=(20, 30, 3), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "contiguous.tif", samples)
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(samples, -1, 0), photometric="rgb", planarconfig="separate")
    for name in ("contiguous.tif", "planar.tif"):
        np.testing.assert_array_equal(read_rgb(tmp_path / name), samples.astype(np.float32) / np.float32(65535))
    (tmp_path / "deep.ppm").write_bytes(b"P6 30 20 65535\n" + samples.astype(">u2").tobytes())
    with pytest.raises(ValueError) as error:
        read_rgb(tmp_path / "deep.ppm")
    assert (
        str(error.value)
        == f"{tmp_path / 'deep.ppm'}: a PPM colour image of more than 8 bits per sample, which is read at its depth"
        " only from PNG or TIFF; save it as one of them"
    )


# --- Read-only or full output folder -----------------------------------------------------------


def _failing_write(code, after=0):
    """A stand-in for ``infer.common._write_file`` that writes half of its data, then fails with ``code``, from the call
    ``after`` on."""
    calls = []
    write = infer.common._write_file

    def fail(path, data):
        calls.append(path)
        if len(calls) <= after:
            return write(path, data)
        path.write_bytes(data[: len(data) // 2])
        raise OSError(code, os.strerror(code), str(path))

    return fail


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_output_folder_is_one_line_and_leaves_no_temporary_file(
    denoise_model, knee_model, tmp_path, monkeypatch, code, photo
):
    denoiser, _ = denoise_model
    for name in "abc":
        photo(tmp_path / "in", f"{name}.png")
    monkeypatch.setattr(infer.common, "_write_file", _failing_write(code, after=1))
    assert (
        _error(_args(denoiser, tmp_path / "in", tmp_path / "out"))
        == f"error: {tmp_path / 'out' / 'b.png'}: cannot write ({os.strerror(code)})"
    )
    assert _files(tmp_path / "out") == ["a.png"]
    knee, root = knee_model
    monkeypatch.setattr(infer.common, "_write_file", _failing_write(code))
    assert (
        _error(_args(knee, root / "val", tmp_path / "recon"))
        == f"error: {tmp_path / 'recon' / 'val_000.h5'}: cannot write ({os.strerror(code)})"
    )
    assert _files(tmp_path / "recon") == []


def test_an_output_folder_that_cannot_be_created_is_one_line(denoise_model, tmp_path, photo):
    model, _ = denoise_model
    photo(tmp_path / "in", "a.png")
    (tmp_path / "file").write_text("a file where the output folder's parent should be")
    assert (
        _error(_args(model, tmp_path / "in", tmp_path / "file" / "out"))
        == f"error: {tmp_path / 'file' / 'out'}: cannot create the output folder (Not a directory)"
    )
