import pytest

from lossbench.data.valset import resolve_image_id

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
    with pytest.raises(ValueError, match=r"val\.h5: figure image index 2 is out of range: the validation set has 2 volumes"):
        resolve_image_id(MRI_IDS, 2, "val.h5")
