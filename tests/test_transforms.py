"""The paper's data pipeline (AlexNet Sec. 2 and 4.1)."""

import numpy as np
import pytest
import torch
from PIL import Image

from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.stats import Stats, compute, load_or_compute
from ilsvrc.data.transforms import PaperTransforms, crop_places, rescale


def fake_stats(size=12, seed=0) -> Stats:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    return Stats(
        size=size,
        mean_image=torch.rand(3, size, size, generator=g) * 255,
        mean_rgb=torch.tensor([120.0, 110.0, 100.0]),
        eigval=torch.tensor([0.22, 0.018, 0.004]),
        eigvec=q.float(),
        count=1,
    )


def test_rescale_shorter_side_then_central_square():
    img = torch.zeros(3, 100, 200, dtype=torch.uint8)
    img[:, :, 50:150] = 255  # the central 100x100 square of a 100x200 image is white
    out = rescale(img, 50)
    assert out.shape == (3, 50, 50) and out.dtype == torch.uint8
    assert out.float().mean() > 250  # only the white centre survives the crop


def test_pca_lighting_offsets_have_the_covariance_of_the_formula():
    """offset = 255 * P (a * l), a ~ N(0, s^2 I)  =>  Cov = 255^2 * P diag(s^2 l^2) P^T.
    20,000 draws (a variance's standard error sqrt(2 / n) = 1%: rtol 5% is 5
    of them), made for all the seeds at once as the resident loader makes
    them (``BatchTransforms.draws``), each the image's own draw (checked here
    on 50 seeds; one at a time, the 20,000 took 8-12 s of the suite)."""
    from ilsvrc.data.batched import BatchTransforms

    st = fake_stats()
    t = PaperTransforms(st, 8, "image", flip=False, pca_lighting=0.1)
    offsets = BatchTransforms(t, torch.device("cpu")).draws(torch.arange(20000))[3].double()
    one_by_one = torch.stack([t.lighting_offset(t.draw(i).alpha) for i in range(50)]).double()
    torch.testing.assert_close(offsets[:50], one_by_one, rtol=1e-5, atol=1e-4)
    P, l = st.eigvec.double(), st.eigval.double()
    expected = 255**2 * P @ torch.diag(0.1**2 * l**2) @ P.T
    measured = torch.cov(offsets.T)
    assert offsets.mean(0).abs().max() < 0.05 * expected.diag().sqrt().max()
    torch.testing.assert_close(measured, expected, rtol=0.05, atol=0.02 * expected.abs().max().item())


def test_lighting_is_one_offset_for_every_pixel():
    st = fake_stats()
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    lit = PaperTransforms(st, 8, "image", flip=False, pca_lighting=0.1)
    plain = PaperTransforms(st, 8, "image", flip=False, pca_lighting=0.0)
    d = lit.draw(3)
    diff = lit.apply(img, d) - plain.apply(img, d)
    torch.testing.assert_close(diff, lit.lighting_offset(d.alpha).view(3, 1, 1).expand_as(diff))


def test_train_view_is_a_crop_of_the_mean_subtracted_image_and_may_flip():
    st = fake_stats()
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    t = PaperTransforms(st, 8, "image", flip=True, pca_lighting=0.0)
    seen_flip, corners = set(), set()
    for i in range(200):
        d = t.draw(i)
        x = t.apply(img, d)
        ref = (img.float() - st.mean_image)[:, d.top : d.top + 8, d.left : d.left + 8]
        torch.testing.assert_close(x, ref.flip(-1) if d.flip else ref)
        seen_flip.add(d.flip)
        corners.add((d.top, d.left))
    assert seen_flip == {True, False}
    assert corners == {(i, j) for i in range(5) for j in range(5)}  # every 8x8 position of a 12x12 image


def test_ten_crops_are_corners_centre_and_reflections():
    st = fake_stats()
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    t = PaperTransforms(st, 8, "image", flip=True, pca_lighting=0.1)
    views = t.test(img, 10)
    x = img.float() - st.mean_image
    assert views.shape == (10, 3, 8, 8)
    expected = [x[:, :8, :8], x[:, :8, 4:], x[:, 4:, :8], x[:, 4:, 4:], x[:, 2:10, 2:10]]
    for i, crop in enumerate(expected):
        torch.testing.assert_close(views[i], crop)
    # views 5-9 are the same crops of the reflected image: top-left of the
    # reflection is the reflected top-right, and so on
    for i, j in enumerate([1, 0, 3, 2, 4]):
        torch.testing.assert_close(views[5 + i], expected[j].flip(-1))
    torch.testing.assert_close(t.test(img, 1)[0], x[:, 2:10, 2:10])  # the centre crop, no lighting at test time


@pytest.mark.parametrize("side", [8, 9, 11, 12])
def test_crop_places_are_torchvisions_centre_and_ten_crops(side):
    """One definition of the test crops' places: torchvision's center_crop
    and ten_crop (odd and even room on either side of the crop)."""
    from torchvision.transforms.v2 import functional as TF

    x = torch.randn(3, side, side)
    crops = [x[:, t : t + 6, l : l + 6].flip(-1) if f else x[:, t : t + 6, l : l + 6]
             for t, l, f in crop_places(side, 6, 10)]
    torch.testing.assert_close(torch.stack(crops), torch.stack(TF.ten_crop(x, [6, 6])), rtol=0, atol=0)
    (t, l, f), = crop_places(side, 6, 1)
    torch.testing.assert_close(x[:, t : t + 6, l : l + 6], TF.center_crop(x, [6, 6]), rtol=0, atol=0)
    with pytest.raises(ValueError, match="test crops must be 1 or 10, not 5"):
        crop_places(side, 6, 5)


def test_per_channel_mean_option():
    st = fake_stats()
    img = torch.randint(0, 256, (3, 12, 12), dtype=torch.uint8)
    x = PaperTransforms(st, 8, "channel", flip=False, pca_lighting=0).test(img, 1)[0]
    torch.testing.assert_close(x, (img.float() - st.mean_rgb.view(3, 1, 1))[:, 2:10, 2:10])


def test_mean_image_and_eigen_of_a_generated_dataset(tiny_data):
    split = open_dataset(tiny_data).train
    st = compute(split, 16, progress=False)
    imgs = []
    for path, _ in split.items:  # the same rescaling, then numpy does the statistics
        im = Image.open(path).convert("RGB")
        imgs.append(rescale(torch.from_numpy(np.array(im)).permute(2, 0, 1).contiguous(), 16).numpy().astype(np.float64))
    imgs = np.stack(imgs)
    assert st.count == len(imgs)
    np.testing.assert_allclose(st.mean_image.numpy(), imgs.mean(0), rtol=1e-5, atol=1e-3)
    pixels = imgs.transpose(0, 2, 3, 1).reshape(-1, 3) / 255.0
    cov = np.cov(pixels.T, bias=True)
    w, v = np.linalg.eigh(cov)
    w, v = w[::-1], v[:, ::-1]
    np.testing.assert_allclose(st.eigval.numpy(), w, rtol=1e-4)
    for i in range(3):  # eigenvectors agree up to sign
        assert abs(abs(float(st.eigvec[:, i].double() @ torch.from_numpy(v[:, i].copy()))) - 1) < 1e-4


def test_statistics_are_cached_and_reused(tiny_data, monkeypatch):
    split = open_dataset(tiny_data).train
    first = load_or_compute(split, 16, progress=False)
    import ilsvrc.data.stats as stats_module

    monkeypatch.setattr(stats_module, "compute", lambda *a, **k: pytest.fail("recomputed despite the cache"))
    again = load_or_compute(split, 16, progress=False)
    torch.testing.assert_close(again.mean_image, first.mean_image)
