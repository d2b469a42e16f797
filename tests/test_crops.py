"""The training windows of every recipe (AlexNet's random crops, VGG/ResNet
scale jittering, GoogLeNet's area crops, CIFAR's padded crops), photometric
distortions and the test views beside the centre crop: geometry, the
distributions the papers state, and the batched path against the reference."""

import math

import pytest
import torch

from ilsvrc.data.batched import BatchTransforms
from ilsvrc.data.transforms import U_COUNT, PaperTransforms, check_settings, distort, normals, uniforms

from test_transforms import fake_stats

KINDS = {
    "scale": dict(crop="scale", scale=[8, 16]),
    "area": dict(crop="area", area=[0.08, 1.0], aspect=[0.75, 4 / 3]),
    "pad": dict(crop="pad", padding=2),
    "photometric": dict(crop="random", photometric=0.4),
}


def transforms(kind: str, mean: str = "image", size: int = 16, image_size: int = 8, **extra) -> PaperTransforms:
    return PaperTransforms(fake_stats(size=size), image_size, mean, flip=True, pca_lighting=0.1, **KINDS[kind], **extra)


def draws(t: PaperTransforms, n: int, seed: int = 0):
    return [t.draw(seed * 1_000_003 + i) for i in range(n)]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("mean", ["image", "channel"])
def test_batched_views_match_the_reference(kind, mean):
    ref = transforms(kind, mean)
    batched = BatchTransforms(ref, torch.device("cpu"))
    imgs = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    seeds = list(range(12))
    out = batched.train(imgs, seeds)
    assert out.shape == (12, 3, 8, 8)
    expected = torch.stack([ref.apply(img, ref.draw(s)) for img, s in zip(imgs, seeds)])
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-3)


def test_scale_jittering_windows_follow_the_training_scale():
    """VGG Sec. 3.1: the square rescaled to S in [S_min, S_max], then an
    image_size crop: a window of side image_size * R / S of the stored square."""
    t = transforms("scale", size=16, image_size=8)  # S in [8, 16], R = 16
    sides = {d.height for d in draws(t, 2000)}
    assert sides == {round(8 * 16 / s) for s in range(8, 17)}  # S = 16: a crop of the square as stored; S = 8: the whole square
    for d in draws(t, 500, seed=1):
        assert d.height == d.width and 0 <= d.top <= 16 - d.height and 0 <= d.left <= 16 - d.width


def test_area_windows_cover_the_stated_fraction_and_aspect():
    """GoogLeNet Sec. 6: 8%-100% of the area, aspect ratio in [3/4, 4/3]."""
    t = transforms("area", size=64, image_size=8)
    ds = draws(t, 3000)
    fractions = torch.tensor([d.height * d.width / 64**2 for d in ds])
    ratios = torch.tensor([d.width / d.height for d in ds])
    assert fractions.min() > 0.07 and fractions.max() <= 1.0
    assert ratios.min() > 0.7 and ratios.max() < 1.4  # rounding to whole pixels blurs the bounds a little
    # uniform in [0.08, 1] has mean 0.54; large non-square windows that do not fit are drawn again, so a little less
    assert 0.44 < fractions.mean() < 0.54
    assert all(0 <= d.top <= 64 - d.height and 0 <= d.left <= 64 - d.width for d in ds)


def test_padded_crops_are_zero_outside_the_image_and_cover_every_offset():
    """ResNet Sec. 4.2: 4 pixels padded on each side, a random 32x32 crop (here 2 and 16)."""
    t = PaperTransforms(fake_stats(size=16), 16, "image", flip=False, pca_lighting=0.0, crop="pad", padding=2)
    ds = draws(t, 2000)
    assert {d.top for d in ds} == set(range(-2, 3)) and {d.left for d in ds} == set(range(-2, 3))
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    d = next(d for d in ds if d.top == -2 and d.left == 2)
    x = t.apply(img, d)
    assert x.shape == (3, 16, 16)
    assert (x[:, :2] == 0).all()  # two rows of padding (after mean subtraction: zeros)
    torch.testing.assert_close(x[:, 2:, :14], img[:, :14, 2:].float() - t.mean[:, :14, 2:])
    for mean in ("image", "channel"):
        t2 = PaperTransforms(fake_stats(size=16), 16, mean, flip=False, pca_lighting=0.0, crop="pad", padding=2)
        assert (t2.apply(img, d)[:, :2] == 0).all()


def test_photometric_factors_are_uniform_in_the_stated_range_and_change_the_image():
    t = transforms("photometric")
    photos = torch.stack([d.photo for d in draws(t, 4000)])
    assert photos.min() >= 0.6 and photos.max() <= 1.4
    assert photos.mean(0).sub(1).abs().max() < 0.02 and photos.std(0).sub(0.8 / math.sqrt(12)).abs().max() < 0.02
    x = torch.rand(3, 5, 5) * 255
    torch.testing.assert_close(distort(x, torch.ones(3)), x)
    grey = distort(x, torch.tensor([1.0, 1.0, 0.0]))  # saturation 0: every channel the luma
    torch.testing.assert_close(grey[0], grey[1])
    bright = distort(x, torch.tensor([1.5, 1.0, 1.0]))
    torch.testing.assert_close(bright, x * 1.5)
    assert transforms("scale").draw(0).photo is None  # off: no draws, no change


def test_test_views_come_from_the_square_rescaled_to_test_resize():
    t = PaperTransforms(fake_stats(size=16), 8, "image", flip=True, pca_lighting=0.1, crop="scale", scale=[8, 16],
                        test_resize=12)
    img = torch.randint(0, 256, (3, 16, 16), dtype=torch.uint8)
    square = t.square(img)
    assert square.shape == (3, 12, 12)
    torch.testing.assert_close(t.test(img, 1)[0], square[:, 2:10, 2:10])
    batched = BatchTransforms(t, torch.device("cpu"))
    imgs = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    for crops in (1, 10):
        expected = torch.stack([t.test(i, crops) for i in imgs])
        torch.testing.assert_close(batched.test(imgs, crops), expected, rtol=0, atol=1e-3)


def test_multi_crop_grid_and_144_crops():
    t = PaperTransforms(fake_stats(size=16), 8, "channel", flip=True, pca_lighting=0.1)
    square = torch.randn(3, 16, 16)
    grid = t.grid(square, 5)
    assert grid.shape == (50, 3, 8, 8)
    torch.testing.assert_close(grid[0], square[:, :8, :8])
    torch.testing.assert_close(grid[24], square[:, 8:, 8:])
    torch.testing.assert_close(grid[25], square[:, :8, :8].flip(-1))
    wide = torch.randint(0, 256, (3, 20, 30), dtype=torch.uint8)  # landscape: left, centre, right squares
    views = t.crops144(wide, [8, 9, 10, 12])
    assert views.shape == (144, 3, 8, 8)
    torch.testing.assert_close(views[72:], views[:72].flip(-1))
    # scale 8: the image is 8 x 12; its left square rescaled to 8 is itself (the sixth view)
    small = torch.nn.functional.interpolate((wide.float() - t.stats.mean_rgb.view(3, 1, 1))[None], size=(8, 12),
                                            mode="bilinear", antialias=True, align_corners=False)[0]
    torch.testing.assert_close(views[5], small[:, :, :8], atol=1e-3, rtol=0)


@pytest.mark.parametrize("bad", [
    dict(crop="scale", scale=[4, 16]),  # S_min below the input size
    dict(crop="scale", scale=[8, 32]),  # S_max above the stored size
    dict(crop="area", area=[0, 1], aspect=[0.75, 1.33]),
    dict(crop="pad", padding=-1),
    dict(crop="random", photometric=1.5),
    dict(crop="spiral"),
])
def test_impossible_settings_are_refused(bad):
    with pytest.raises(ValueError):
        check_settings(8, 16, "image", **bad)


def test_counter_based_draws_are_uniform_independent_and_the_same_in_bulk():
    """The k-th number of an image is a hash of (its seed, k): uniform, no
    correlation between columns or neighbouring seeds, the same whether drawn
    for one image or for a whole batch."""
    seeds = torch.arange(20000, dtype=torch.long) * 7919 + (1 << 40)
    u = uniforms(seeds)
    assert u.shape == (20000, U_COUNT) and 0 < u.min() and u.max() < 1
    assert u.mean().item() == pytest.approx(0.5, abs=0.005) and u.var().item() == pytest.approx(1 / 12, abs=0.002)
    corr = torch.corrcoef(torch.cat([u[:-1, :6], u[1:, :6]], 1).T)
    assert (corr - torch.eye(12, dtype=corr.dtype)).abs().max() < 0.03
    torch.testing.assert_close(uniforms(seeds[5:6])[0], u[5], rtol=0, atol=0)
    z = normals(u[:, 3:7])
    assert z.mean(0).abs().max() < 0.03 and (z.std(0) - 1).abs().max() < 0.03
    counts = torch.bincount((u[:, 0] * 10).long(), minlength=10).double()
    assert ((counts - 2000) ** 2 / 2000).sum() < 30  # chi-square, 9 degrees of freedom


def test_device_side_padded_crops_have_the_papers_distribution():
    """The batched (GPU) path of ResNet Sec. 4.2's augmentation: every offset of
    the 32x32 crop in the 4-padded 40x40 image equally likely, reflections half
    the time. Pixels encode their own row and column, so each view shows where
    it was cut (0: padding)."""
    stats = fake_stats(size=32)
    stats.mean_image.zero_()
    t = PaperTransforms(stats, 32, "image", flip=True, pca_lighting=0.0, crop="pad", padding=4)
    batched = BatchTransforms(t, torch.device("cpu"))
    ramp = torch.arange(1, 33, dtype=torch.uint8)
    img = torch.stack([ramp[:, None].expand(32, 32), ramp[None, :].expand(32, 32), torch.zeros(32, 32, dtype=torch.uint8)])
    n = 4500
    views = batched.train(img.expand(n, 3, 32, 32), list(range(n)))
    rows, cols = views[:, 0], views[:, 1]
    flipped = cols[:, 16, 15] > cols[:, 16, 16]  # two pixels inside the image for every offset

    def offsets(lines: torch.Tensor) -> torch.Tensor:
        """Window start (image coordinates) from view lines holding coordinate + 1 (0 in the padding)."""
        first = (lines > 0).float().argmax(1)  # the first view pixel inside the image
        return lines.gather(1, first[:, None])[:, 0] - 1 - first

    tops = offsets(rows[:, :, 16])
    lefts = offsets(torch.where(flipped[:, None], cols[:, 16].flip(-1), cols[:, 16]))
    assert set(tops.long().tolist()) == set(range(-4, 5)) and set(lefts.long().tolist()) == set(range(-4, 5))
    counts = torch.bincount((tops + 4).long() * 9 + (lefts + 4).long(), minlength=81).double()
    assert ((counts - n / 81) ** 2 / (n / 81)).sum() < 130  # chi-square, 80 degrees of freedom (p ~ 0.0004)
    assert flipped.double().mean().item() == pytest.approx(0.5, abs=0.03)
    shifted = views[~flipped][:, :2]
    assert ((shifted == 0) | (shifted >= 1)).all()  # padding is zero, image pixels their own coordinates
