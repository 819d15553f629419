import pickle

import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lossbench.data import h5files
from lossbench.data.denoise import (
    DecodedImages,
    DenoiseTrainDataset,
    ImageFiles,
    open_images,
    validation_noise,
    write_decoded,
)
from lossbench.data.images import EMBEDDED_PHOTOS, embedded_photo_path, list_images, read_rgb, write_png
from lossbench.data.tasks import prepare_embedded_photos, write_valset
from lossbench.data.valset import ImageFile
from lossbench.metrics import compute


@pytest.fixture
def photo_dir(tmp_path):
    prepare_embedded_photos(["astronaut", "coffee"], tmp_path / "photos", max_side=128)
    return tmp_path / "photos"


def test_every_embedded_photo_is_bundled_and_rgb():
    for name in EMBEDDED_PHOTOS:
        image = read_rgb(embedded_photo_path(name))
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0


def test_validation_noise_has_the_configured_sigma_and_is_not_clipped():
    clean = np.full((256, 256, 3), 0.5, dtype=np.float32)
    noisy = validation_noise(clean, "img", sigma=25, seed=0)
    assert abs(float((noisy - clean).std()) - 25 / 255) < 0.002
    flat_dark = validation_noise(np.zeros((64, 64, 3), np.float32), "img", sigma=25, seed=0)
    assert flat_dark.min() < 0  # unclipped, as in the thesis's Noisy column


def test_validation_noise_is_fixed_per_image_and_seed():
    clean = np.zeros((16, 16, 3), dtype=np.float32)
    assert np.array_equal(validation_noise(clean, "a", 25, 0), validation_noise(clean, "a", 25, 0))
    assert not np.array_equal(validation_noise(clean, "a", 25, 0), validation_noise(clean, "b", 25, 0))
    assert not np.array_equal(validation_noise(clean, "a", 25, 0), validation_noise(clean, "a", 25, 1))


def test_thesis_noisy_column_is_unclipped_sigma_25_noise():
    # Thesis Table 6.1, Noisy: 1000·l1 78.22, 1000·l2 9.61, PSNR 20.17 (σ = 25/255, any image).
    clean = torch.from_numpy(np.full((1, 3, 512, 768), 0.5, dtype=np.float32))
    noisy = torch.from_numpy(
        validation_noise(clean[0].numpy().transpose(1, 2, 0), "kodim01", 25, 0).transpose(2, 0, 1)
    )[None]
    assert float(compute("l1", noisy, clean)[0]) * 1000 == pytest.approx(78.22, abs=0.15)
    assert float(compute("l2", noisy, clean)[0]) * 1000 == pytest.approx(9.61, abs=0.03)
    assert float(compute("psnr", noisy, clean)[0]) == pytest.approx(20.17, abs=0.02)


def test_training_samples_are_reproducible_and_vary_by_seed(photo_dir):
    dataset = DenoiseTrainDataset(
        ImageFiles(list(list_images(photo_dir).values())), crop=32, sigma_range=(0, 40), crops_per_image=3
    )
    assert len(dataset) == 6
    noisy, clean = dataset.pair(4, 123)
    assert noisy.shape == clean.shape == (3, 32, 32)
    again = dataset.pair(4, 123)
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, dataset.pair(4, 124)[0])


def test_a_training_item_is_its_seeded_crop_augmentation_and_normal_noise(photo_dir):
    # Every number of an item, spelled out with the draws in their order: numpy's for the crop,
    # augmentation, sigma and noise seed, then torch's generator for the noise itself.
    images = ImageFiles(list(list_images(photo_dir).values()))
    dataset = DenoiseTrainDataset(images, crop=32, sigma_range=(0, 40), crops_per_image=3)
    for index, seed in ((4, 123), (0, 2**32 - 1)):
        rng = np.random.default_rng(seed)
        height, width = images.shapes[index // 3]
        top, left = int(rng.integers(height - 31)), int(rng.integers(width - 31))
        clean = np.rot90(read_rgb(images.files[index // 3])[top : top + 32, left : left + 32], k=int(rng.integers(4)))
        clean = torch.from_numpy(
            np.ascontiguousarray(
                (clean[:, ::-1] if rng.integers(2) else clean)[..., rng.permutation(3)].transpose(2, 0, 1)
            )
        )
        sigma = np.float32(rng.uniform(0, 40) / 255.0)
        noise = torch.randn(
            (3, 32, 32), generator=torch.Generator().manual_seed(int(rng.integers(2**63, dtype=np.int64)))
        )
        item = dataset[(index, seed)]
        assert torch.equal(torch.from_numpy(item["clean"]), clean) and item["sigma"] == sigma
        noisy, expected_clean = dataset.pair(index, seed)
        assert torch.equal(expected_clean, clean)
        assert torch.equal(noisy, clean + noise * float(sigma))


def test_a_samples_noise_does_not_depend_on_its_batch(photo_dir):
    dataset = DenoiseTrainDataset(
        ImageFiles(list(list_images(photo_dir).values())), crop=32, sigma_range=(0, 40), crops_per_image=3
    )
    keys = [(4, 123), (0, 7), (2, 99)]
    noisy, clean = dataset.finish_batch(dataset.collate([dataset[key] for key in keys]), "cpu")
    for row, key in enumerate(keys):
        alone = dataset.pair(*key)
        assert torch.equal(noisy[row], alone[0]) and torch.equal(clean[row], alone[1])
    assert not torch.equal(noisy[0] - clean[0], noisy[1] - clean[1])


def test_training_noise_stays_within_the_sigma_range(photo_dir):
    dataset = DenoiseTrainDataset(
        ImageFiles(list(list_images(photo_dir).values())), crop=64, sigma_range=(10, 20), augment=False
    )
    sigmas = [float((n - c).std()) * 255 for n, c in (dataset.pair(0, seed) for seed in range(20))]
    assert 9 < min(sigmas) and max(sigmas) < 21


def test_crop_larger_than_image_is_a_clear_error(tmp_path):
    write_png(tmp_path / "small.png", np.zeros((20, 30, 3)))
    with pytest.raises(ValueError, match=r"small\.png.*smaller than the 32×32 crop"):
        DenoiseTrainDataset(ImageFiles([tmp_path / "small.png"]), crop=32, sigma_range=(0, 40)).pair(0, 1)


def test_validation_set_round_trip(photo_dir, tmp_path):
    data = {"sigma_val": 25}
    count = write_valset("rgb_denoise", data, photo_dir, tmp_path / "val.h5", seed=0)
    assert count == 2
    with ImageFile(tmp_path / "val.h5") as val:
        assert val.ids == ["astronaut", "coffee"]
        noisy, clean = val.read("input", "astronaut"), val.read("target", "astronaut")
        assert noisy.shape == clean.shape and noisy.shape[0] == 3 and max(noisy.shape[1:]) == 128
        assert abs(float((noisy - clean).std()) - 25 / 255) < 0.01


def test_empty_or_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list_images(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="no image files"):
        list_images(tmp_path)


def _odd_photos(folder):
    """An RGB PNG, a JPEG, a palette PNG, an RGBA PNG and a 16-bit grayscale PNG, each at least 40 px."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (41, 53, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "a_rgb.png")
    Image.fromarray(rgb).save(folder / "b_photo.jpg", quality=85)
    Image.fromarray(rgb).convert("P").save(folder / "c_palette.png")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(folder / "d_alpha.png")
    Image.fromarray(rng.integers(0, 65536, (44, 40), dtype=np.uint16)).save(folder / "e_deep.png")
    return list(list_images(folder).values())


def test_decoded_crops_are_the_pixels_of_the_image_files(tmp_path):
    # The decoded file must give bit-identical crops (hence identical training) to decoding each time.
    paths = _odd_photos(tmp_path / "photos")
    assert write_decoded(paths, tmp_path / "train_decoded.h5") == len(paths)
    with h5py.File(tmp_path / "train_decoded.h5") as file:
        dtypes = [file["images"][f"{index:06d}"].dtype for index in range(len(paths))]
    # 8-bit images as uint8; the 16-bit one kept exactly as float32.
    assert dtypes == [np.uint8] * 4 + [np.float32]
    settings = {"crop": 40, "sigma_range": (0, 50), "crops_per_image": 2}
    decoded = DenoiseTrainDataset(open_images(tmp_path / "train_decoded.h5"), **settings)
    files = DenoiseTrainDataset(open_images(tmp_path / "photos"), **settings)
    assert isinstance(decoded.images, DecodedImages) and isinstance(files.images, ImageFiles)
    assert decoded.images.shapes == files.images.shapes and decoded.images.files == [tmp_path / "train_decoded.h5"]
    copy = pickle.loads(pickle.dumps(decoded))  # as a "spawn" DataLoader worker gets it: no open handle
    for index in range(len(files)):
        for seed in (0, 7, 2**32 - 1):
            for a, b, c in zip(decoded.pair(index, seed), files.pair(index, seed), copy.pair(index, seed)):
                assert torch.equal(a, b) and torch.equal(a, c)


def test_decoded_file_errors_name_the_file(tmp_path):
    paths = _odd_photos(tmp_path / "photos")
    (tmp_path / "photos" / "f_broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match=r"f_broken\.jpg: cannot read as an image"):
        write_decoded(paths + [tmp_path / "photos" / "f_broken.jpg"], tmp_path / "train_decoded.h5")
    assert not (tmp_path / "train_decoded.h5").exists()
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file["x"] = 1
    with pytest.raises(ValueError, match=r"other\.h5: not a decoded training-images file"):
        DecodedImages(tmp_path / "other.h5")
    (tmp_path / "garbage.h5").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"garbage\.h5: cannot read as HDF5"):
        DecodedImages(tmp_path / "garbage.h5")
    write_decoded(paths, tmp_path / "train_decoded.h5")
    with pytest.raises(ValueError, match=r"a_rgb\.png: image 53×41 is smaller than the 42×42 crop"):
        DenoiseTrainDataset(DecodedImages(tmp_path / "train_decoded.h5"), crop=42, sigma_range=(0, 40))


@pytest.mark.parametrize("pickled_limit", [h5files.PICKLED_HANDOVER_BYTES, 0])  # pickled, and through shared memory
def test_worker_batches_hand_over_stored_pixels_and_equal_the_image_files(tmp_path, monkeypatch, pickled_limit):
    # Crops of 8-bit photographs cross from the worker as uint8 and become float32 on the device;
    # a batch that also holds the 16-bit photograph's float32 crop is float32 throughout.
    paths = _odd_photos(tmp_path / "photos")
    write_decoded(paths, tmp_path / "train_decoded.h5")
    monkeypatch.setattr(h5files, "PICKLED_HANDOVER_BYTES", pickled_limit)
    settings = {"crop": 40, "sigma_range": (0, 50), "crops_per_image": 1}
    decoded = DenoiseTrainDataset(DecodedImages(tmp_path / "train_decoded.h5"), **settings)
    files = DenoiseTrainDataset(ImageFiles(paths), **settings)
    batches = [[(0, 11), (1, 12)], [(3, 13), (4, 14), (2, 15)]]
    loader = DataLoader(decoded, batch_sampler=batches, num_workers=1, collate_fn=decoded.collate)
    for raw, keys in zip(loader, batches):
        assert raw["clean"].dtype in ((torch.float32, np.float32) if 4 in dict(keys) else (torch.uint8, np.uint8))
        expected = files.finish_batch(files.collate([files[key] for key in keys]), "cpu")
        assert all(torch.equal(a, b) for a, b in zip(decoded.finish_batch(raw, "cpu"), expected))
