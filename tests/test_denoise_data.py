import numpy as np
import pytest
import torch

from lossbench.data.denoise import DenoiseTrainDataset, validation_noise
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
    noisy = torch.from_numpy(validation_noise(clean[0].numpy().transpose(1, 2, 0), "kodim01", 25, 0).transpose(2, 0, 1))[None]
    assert float(compute("l1", noisy, clean)[0]) * 1000 == pytest.approx(78.22, abs=0.15)
    assert float(compute("l2", noisy, clean)[0]) * 1000 == pytest.approx(9.61, abs=0.03)
    assert float(compute("psnr", noisy, clean)[0]) == pytest.approx(20.17, abs=0.02)


def test_training_samples_are_reproducible_and_vary_by_seed(photo_dir):
    dataset = DenoiseTrainDataset(list(list_images(photo_dir).values()), crop=32, sigma_range=(0, 40), crops_per_image=3)
    assert len(dataset) == 6
    noisy, clean = dataset[(4, 123)]
    assert noisy.shape == clean.shape == (3, 32, 32)
    again = dataset[(4, 123)]
    assert torch.equal(noisy, again[0]) and torch.equal(clean, again[1])
    assert not torch.equal(noisy, dataset[(4, 124)][0])


def test_training_noise_stays_within_the_sigma_range(photo_dir):
    dataset = DenoiseTrainDataset(list(list_images(photo_dir).values()), crop=64, sigma_range=(10, 20), augment=False)
    sigmas = [float((n - c).std()) * 255 for n, c in (dataset[(0, seed)] for seed in range(20))]
    assert 9 < min(sigmas) and max(sigmas) < 21


def test_crop_larger_than_image_is_a_clear_error(tmp_path):
    write_png(tmp_path / "small.png", np.zeros((20, 30, 3)))
    with pytest.raises(ValueError, match=r"small\.png.*smaller than the 32×32 crop"):
        DenoiseTrainDataset([tmp_path / "small.png"], crop=32, sigma_range=(0, 40))[(0, 1)]


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
