"""Reading ImageFolder datasets, including the bad files real ImageNet holds."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ilsvrc import UserError
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.folders import SkippedImageWarning, decode_rgb
from ilsvrc.data.loaders import Images, loader
from ilsvrc.data.order import EpochOrder
from ilsvrc.data.stats import compute
from ilsvrc.data.transforms import PaperTransforms

from conftest import make_images


@pytest.fixture
def odd_files(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:50]  # smooth, so that JPEG keeps it close
    a = np.stack([xx * 5, yy * 6, 255 - xx * 4], axis=2).clip(0, 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "rgb.JPEG")
    Image.fromarray(a).convert("L").save(tmp_path / "grey.JPEG")
    Image.fromarray(a).convert("CMYK").save(tmp_path / "cmyk.JPEG")
    Image.fromarray(a).save(tmp_path / "png_inside.JPEG", format="PNG")
    (tmp_path / "corrupt.JPEG").write_bytes(rng.bytes(3000))
    good = (tmp_path / "rgb.JPEG").read_bytes()
    (tmp_path / "truncated.JPEG").write_bytes(good[: len(good) // 3])
    return tmp_path, a


@pytest.mark.parametrize("name", ["rgb", "grey", "cmyk", "png_inside"])
def test_decodable_files_become_rgb(odd_files, name):
    folder, a = odd_files
    x = decode_rgb(str(folder / f"{name}.JPEG"))
    assert x.shape == (3, 40, 50) and x.dtype == torch.uint8
    ref = a.mean(2) if name == "grey" else a.transpose(2, 0, 1)
    if name != "grey":
        assert np.abs(x.numpy().astype(float) - ref).mean() < 12  # lossy JPEG and CMYK round trips
    else:
        assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])


@pytest.mark.parametrize("name", ["corrupt", "truncated"])
def test_undecodable_files_give_none(odd_files, name):
    assert decode_rgb(str(odd_files[0] / f"{name}.JPEG")) is None


def test_a_corrupt_image_is_skipped_with_one_warning_per_run(tmp_path):
    make_images(tmp_path, 2, 4, split="train")
    make_images(tmp_path, 2, 2, split="val")
    bad = tmp_path / "train" / "class0" / "broken.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    ds = open_dataset(tmp_path)
    with pytest.warns(SkippedImageWarning, match="broken.JPEG"):
        st = compute(ds.train, 16, progress=False)
    assert st.count == 8 and st.skipped == [str(bad)]
    t = PaperTransforms(st, 12, "image", True, 0.1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        seen = 0
        for epoch in range(2):
            for batch in loader(Images(ds.train, t), 3, shuffle=True, epoch=epoch):
                seen += len(batch.labels)
                from ilsvrc.data.folders import warn_skipped

                warn_skipped(batch.skipped)
    assert seen == 16  # 8 good images, two epochs
    assert not [w for w in caught if issubclass(w.category, SkippedImageWarning)]  # warned once already


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    a = [i for i, _ in EpochOrder(50, shuffle=True, seed=1, epoch=0)]
    assert sorted(a) == list(range(50)) and a != list(range(50))
    assert a == [i for i, _ in EpochOrder(50, shuffle=True, seed=1, epoch=0)]
    assert a != [i for i, _ in EpochOrder(50, shuffle=True, seed=1, epoch=1)]
    assert a[20:] == [i for i, _ in EpochOrder(50, shuffle=True, seed=1, epoch=0, start=20)]


def test_batches_do_not_depend_on_the_number_of_workers(tiny_data):
    ds = open_dataset(tiny_data)
    st = compute(ds.train, 16, progress=False)
    t = PaperTransforms(st, 12, "image", True, 0.1)
    a = [b.images for b in loader(Images(ds.train, t), 5, shuffle=True, seed=3, workers=0)]
    b = [b.images for b in loader(Images(ds.train, t), 5, shuffle=True, seed=3, workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_layout_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(UserError, match="no val/ or test/"):
        open_dataset(tmp_path)
    (tmp_path / "train").mkdir()
    (tmp_path / "val").mkdir()
    with pytest.raises(UserError, match="no class folders"):
        open_dataset(tmp_path)
    make_images(tmp_path, 2, 2, split="train")
    make_images(tmp_path, 3, 2, split="val")
    with pytest.raises(UserError, match="different classes"):
        open_dataset(tmp_path)


def test_test_split_is_used_when_there_is_no_val(tmp_path):
    make_images(tmp_path, 2, 2, split="train")
    make_images(tmp_path, 2, 1, split="test")
    ds = open_dataset(tmp_path)
    assert ds.heldout.name == "test" and len(ds.heldout.items) == 2


def test_a_class_folder_without_images_is_an_error(tmp_path):
    make_images(tmp_path, 2, 2, split="train")
    make_images(tmp_path, 2, 1, split="val")
    (tmp_path / "train" / "class1").rename(tmp_path / "x")
    (tmp_path / "train" / "class1").mkdir()
    (tmp_path / "train" / "class1" / "notes.txt").write_text("no images here")
    with pytest.raises(UserError, match="class1"):
        open_dataset(tmp_path)
