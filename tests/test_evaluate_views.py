"""Top-1/top-5 error and every test view, checked against direct computations
(issue 25): top-5 on twelve classes, where it can be wrong; the centre,
ten-crop, dense, multi-crop and 144-crop probabilities of a stand-in network
whose logits are a known function of its input, against the same views cut
here with torchvision's functions from the papers' definitions (AlexNet
Sec. 4.1 and 6, VGG Sec. 3.2, GoogLeNet Sec. 7).

Tolerances: the stand-in's logits are sums of 3 x 8 x 8 = 192 float32
products (each below about 2, the sums below 16), here summed in another
order than the code's (a matrix product, a convolution, a loop over windows)
and from windows resized with the same bilinear weights in another order.
Each addition rounds by at most 2**-20 ~ 1e-6, so the two sums differ by
about sqrt(192) x 1e-6 ~ 1.3e-5 (rounding errors adding up at random; 2e-4
at the very worst), and a softmax's relative error is at most twice its
logits' absolute error: ``rtol=1e-4`` (the largest difference measured is
8e-6; ``atol`` 1e-7 for probabilities near zero). Every break these tests
guard against (a reflection dropped, logits averaged instead of
probabilities, a crop in the wrong place, a scale left out) moves some
probability by 25% or more.
"""

import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF

from ilsvrc import train
from ilsvrc.data.datasets import open_dataset
from ilsvrc.data.order import Batch
from ilsvrc.data.stats import Stats
from ilsvrc.data.transforms import PaperTransforms
from ilsvrc.evaluate import dense_proba, evaluate_model, grid_proba, predict_proba
from ilsvrc.metrics import count_errors

from conftest import make_images
from test_transforms import fake_stats

CLASSES = 12  # more than five: a label can be outside the top five
S = 8  # the stand-in's input size
TOL = dict(rtol=1e-4, atol=1e-7)  # see the module's docstring


class Probe(nn.Module):
    """A stand-in network whose logits are a fixed linear map of the S x S
    view's pixels (every pixel its own weights: a crop's place and its
    reflection change the logits). ``dense`` slides the same map over every
    S x S window of a larger input (a convolution) and averages the score
    map, as the models' ``dense`` does (``models/layers.py``)."""

    def __init__(self, classes: int = CLASSES, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        # inputs are mean-subtracted pixels of about +-60: logits within +-10, the softmax far from one-hot
        self.weight = nn.Parameter(torch.randn(classes, 3, S, S, generator=g) * 0.004)
        self.bias = nn.Parameter(torch.randn(classes, generator=g))

    def forward(self, x):
        assert x.shape[1:] == (3, S, S), x.shape
        return x.flatten(1) @ self.weight.flatten(1).T + self.bias

    def dense(self, x):
        return F.conv2d(x, self.weight, self.bias).mean((-2, -1))


def logits(probe: Probe, view: torch.Tensor) -> torch.Tensor:
    """The stand-in's logits of one (3, S, S) view, written out: sum of pixel x weight."""
    return (view[None] * probe.weight).sum((1, 2, 3)) + probe.bias


def dense_logits(probe: Probe, image: torch.Tensor) -> torch.Tensor:
    """The class score map of a (3, Q, Q) image, averaged: the logits of every
    S x S window, one window at a time (VGG Sec. 3.2)."""
    q = image.shape[-1]
    windows = [logits(probe, image[:, t : t + S, l : l + S]) for t in range(q - S + 1) for l in range(q - S + 1)]
    return torch.stack(windows).mean(0)


def mean_softmax(scores: list[torch.Tensor]) -> torch.Tensor:
    """Class posteriors averaged over views (softmax of each view first)."""
    return torch.stack([F.softmax(s, dim=0) for s in scores]).mean(0)


def resized(x: torch.Tensor, q: int) -> torch.Tensor:
    return TF.resize(x, [q, q], antialias=True)


# The views, from the papers' definitions, for one image.

def centre_views(square: torch.Tensor, test_resize: int) -> list[torch.Tensor]:
    return [TF.center_crop(resized(square, test_resize), [S, S])]


def ten_views(square: torch.Tensor, test_resize: int) -> list[torch.Tensor]:
    """AlexNet Sec. 4.1: the four corner patches and the centre patch, and their reflections."""
    return list(TF.ten_crop(resized(square, test_resize), [S, S]))


def grid_views(square: torch.Tensor, q: int) -> list[torch.Tensor]:
    """VGG Sec. 3.2: a regular 5 x 5 grid of crops and their flips (the
    scales here put the grid on whole pixels: (q - S) / 4 an integer)."""
    y = resized(square, q)
    assert (q - S) % 4 == 0
    places = [i * (q - S) // 4 for i in range(5)]
    crops = [TF.crop(y, t, l, S, S) for t in places for l in places]
    return crops + [TF.hflip(c) for c in crops]


def views_144(image: torch.Tensor, mean_rgb: torch.Tensor, q: int) -> list[torch.Tensor]:
    """GoogLeNet Sec. 7 at one scale: the shorter side rescaled to q; the left,
    centre and right squares (top, centre and bottom when portrait); of each
    the four corner and the centre S x S crops and the square resized to S;
    and the mirrored versions of all. (The scales here put the centre square
    and centre crops on whole pixels.)"""
    y = TF.resize(image.float(), [q], antialias=True) - mean_rgb.view(3, 1, 1)
    h, w = y.shape[-2:]
    room = max(h, w) - q
    assert room % 2 == 0 and (q - S) % 2 == 0
    squares = [TF.crop(y, o, 0, q, q) if h > w else TF.crop(y, 0, o, q, q) for o in (0, room // 2, room)]
    views = []
    for sq in squares:
        views += list(TF.five_crop(sq, [S, S])) + [resized(sq, S)]
    return views + [TF.hflip(v) for v in views]


def assert_misses_are_clear(probs: torch.Tensor, labels: torch.Tensor) -> None:
    """No top-1 or top-5 miss can flip between the probabilities compared and
    those computed here: each label's rank is the same whether every other
    probability is taken twice the tolerance above or below the label's."""
    own = probs.gather(1, labels[:, None])
    margin = 2 * TOL["rtol"]
    best = 1 + (probs > own * (1 + margin)).sum(1)  # the label's rank with every near tie in its favour
    worst = (probs > own * (1 - margin)).sum(1)  # ... and against it (the label itself counted as its 1)
    for k in (1, 5):
        assert torch.equal(best > k, worst > k), k


def direct_errors(probs: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """Top-1 and top-5 error (percent) from each label's rank: 1 + the number
    of classes more probable than it (AlexNet Sec. 6)."""
    ranks = 1 + (probs > probs.gather(1, labels[:, None])).sum(1)
    n = len(labels)
    return 100.0 * (ranks > 1).sum().item() / n, 100.0 * (ranks > 5).sum().item() / n


# Top-1 and top-5 error of known probabilities.

RANKS = [1, 2, 5, 6, 12, 1, 5, 7]  # each image's label's rank among the twelve classes
# misses: top-1 the six of rank > 1 (75%), top-5 the three of rank > 5 (37.5%);
# a top-4 would miss five (62.5%), a top-6 two (25%), a "top-5" of top-1 six


def ranked_probs(ranks: list[int], seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Probabilities over CLASSES classes (each row in a random order of the
    classes) and labels whose ranks are ``ranks``."""
    g = torch.Generator().manual_seed(seed)
    probs, labels = [], []
    for r in ranks:
        order = torch.randperm(CLASSES, generator=g)  # order[i]: the class ranked i + 1
        row = torch.empty(CLASSES)
        row[order] = F.softmax(torch.linspace(3.0, 0.0, CLASSES), dim=0)  # strictly decreasing with rank
        probs.append(row)
        labels.append(order[r - 1])
    return torch.stack(probs), torch.stack(labels)


def test_count_errors_counts_top1_and_top5_misses_over_twelve_classes():
    probs, labels = ranked_probs(RANKS)
    m1, m5 = count_errors(probs, labels)
    assert (m1.item(), m5.item()) == (6, 3)
    assert direct_errors(probs, labels) == (75.0, 37.5)


def test_evaluate_model_gives_top1_and_top5_error_of_known_probabilities():
    """Over two batches of different sizes, the probabilities a ``proba`` gives."""
    probs, labels = ranked_probs(RANKS, seed=1)
    batches = [Batch(torch.arange(0, 3), labels[:3], []), Batch(torch.arange(3, 8), labels[3:], [])]
    result = evaluate_model(nn.Identity(), batches, torch.device("cpu"), proba=lambda m, idx: probs[idx])
    assert result == {"top1_error": 75.0, "top5_error": 37.5, "images": 8}


def test_evaluate_model_scores_the_softmax_averaged_over_a_batchs_crops():
    """The default ``proba``: each crop's softmax, averaged over its image's crops."""
    probe = Probe()
    g = torch.Generator().manual_seed(2)
    views = torch.randn(16, 4, 3, S, S, generator=g) * 60
    labels = torch.randint(0, CLASSES, (16,), generator=g)
    expected = torch.stack([mean_softmax([logits(probe, v) for v in crops]) for crops in views])
    torch.testing.assert_close(predict_proba(probe, views), expected, **TOL)
    assert_misses_are_clear(expected, labels)
    top1, top5 = direct_errors(expected, labels)
    assert 0 < top5 < top1 < 100  # neither error trivial: a top-5 that were top-1, or top-12, would differ
    result = evaluate_model(probe, [Batch(views[:7], labels[:7], []), Batch(views[7:], labels[7:], [])],
                            torch.device("cpu"))
    assert (result["top1_error"], result["top5_error"], result["images"]) == (top1, top5, 16)


# Each view function on its own, against the views cut here.

def test_dense_proba_is_each_scale_and_its_reflection_softmax_averaged():
    """VGG Sec. 3.2: the whole image at each scale Q, the score map averaged,
    and the reflected image; class posteriors averaged over all of them."""
    probe = Probe()
    squares = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 60
    scales = [8, 11, 16]  # at the network's size (one window), rescaled, and as given
    expected = torch.stack([
        mean_softmax([dense_logits(probe, v) for q in scales for v in (resized(sq, q), TF.hflip(resized(sq, q)))])
        for sq in squares
    ])
    torch.testing.assert_close(dense_proba(probe, squares, scales), expected, **TOL)


def test_grid_proba_is_a_five_by_five_grid_and_reflections_per_scale():
    """VGG Sec. 3.2 multi-crop: 5 x 5 crops and their flips at each scale."""
    probe = Probe()
    transforms = PaperTransforms(fake_stats(size=16), S, "image", flip=True, pca_lighting=0.0)
    squares = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 60
    scales = [12, 16]
    expected = torch.stack([mean_softmax([logits(probe, v) for q in scales for v in grid_views(sq, q)])
                            for sq in squares])
    torch.testing.assert_close(grid_proba(probe, squares, scales, transforms), expected, **TOL)


@pytest.mark.parametrize("shape", [(20, 30), (30, 20)], ids=["landscape", "portrait"])
def test_144_crops_are_googlenets(shape):
    """GoogLeNet Sec. 7: 4 scales x 3 squares x 6 crops x 2 reflections."""
    probe = Probe()
    transforms = PaperTransforms(fake_stats(size=16), S, "image", flip=True, pca_lighting=0.0)
    image = torch.randint(0, 256, (3, *shape), dtype=torch.uint8, generator=torch.Generator().manual_seed(5))
    scales = [8, 12, 16, 20]  # the longer side 12, 18, 24, 30: the squares 2, 3, 4, 5 pixels apart
    views = transforms.crops144(image, scales)
    assert views.shape == (144, 3, S, S)
    ours = [v for q in scales for v in views_144(image, transforms.stats.mean_rgb, q)]
    expected = mean_softmax([logits(probe, v) for v in ours])
    torch.testing.assert_close(predict_proba(probe, views[None])[0], expected, **TOL)


# ilsvrc.evaluate.evaluate end to end: twelve classes of generated images, the
# stand-in network in place of the checkpoint's, every view.

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A checkpoint of twelve classes (stored squares R = 16, network input 8,
    test_resize 12), and a copy of it whose test_resize is the stored size
    (the batched centre and ten crops' other path)."""
    root = tmp_path_factory.mktemp("twelve")
    make_images(root, CLASSES, 1, seed=5, split="train")
    make_images(root, CLASSES, 2, seed=6, split="val")  # 40 x 52: landscape originals for 144 crops
    out = root / "run"
    train("resnet-cifar", root, out, max_steps=1, image_size=S, resize=16, test_resize=12, batch_size=8,
          device="cpu", workers=0, progress=False)
    ckpt = torch.load(out / "last.pt", weights_only=True)
    ckpt["config"]["data"]["test_resize"] = 16
    (root / "run16").mkdir()
    torch.save(ckpt, root / "run16" / "last.pt")
    return {12: out, 16: root / "run16"}


def evaluate_with_probe(monkeypatch, run, **kwargs):
    """``evaluate`` with the stand-in network, and the probabilities and
    labels it scored, in order."""
    module = sys.modules["ilsvrc.evaluate"]  # the module (the package's attribute of that name is the function)
    probe = Probe()
    seen = []

    def spy(probs, labels):
        seen.append((probs.clone(), labels.clone()))
        return count_errors(probs, labels)

    monkeypatch.setattr(module, "model_from_checkpoint", lambda ckpt: probe)
    monkeypatch.setattr(module, "count_errors", spy)
    result = module.evaluate(run, None, device="cpu", workers=0, progress=False, batch_size=5, **kwargs)
    return probe, result, torch.cat([p for p, _ in seen]), torch.cat([l for _, l in seen])


def expected_probs(probe, run, views: str, scales: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The held-out images' class posteriors under ``views``, cut here from the
    stored squares (minus the training set's mean image) or, for 144 crops,
    from the original files (minus the mean RGB)."""
    ckpt = torch.load(run / "last.pt", weights_only=True)
    stats, test_resize = Stats.from_dict(ckpt["stats"]), ckpt["config"]["data"]["test_resize"]
    split = open_dataset(ckpt["data_root"], need_train=False).heldout
    rows = []
    for i in range(len(split)):
        square = split.read(i, stats.size).float() - stats.mean_image
        with torch.no_grad():
            if views == "centre":
                scores = [logits(probe, v) for v in centre_views(square, test_resize)]
            elif views == "ten-crop":
                scores = [logits(probe, v) for v in ten_views(square, test_resize)]
            elif views == "dense":
                scores = [dense_logits(probe, v) for q in scales
                          for v in (resized(square, q), TF.hflip(resized(square, q)))]
            elif views == "multi-crop":
                scores = [logits(probe, v) for q in scales for v in grid_views(square, q)]
            else:
                scores = [logits(probe, v) for q in scales for v in views_144(split.original(i), stats.mean_rgb, q)]
        rows.append(mean_softmax(scores))
    return torch.stack(rows), torch.as_tensor(split.labels)


def check_against_direct(result, seen, labels, expected, expected_labels):
    """What ``evaluate`` scored and reported against the direct computation."""
    torch.testing.assert_close(labels, expected_labels)
    torch.testing.assert_close(seen, expected, **TOL)
    assert_misses_are_clear(expected, expected_labels)
    top1, top5 = direct_errors(expected, expected_labels)
    assert 0 < top5 < top1 < 100  # top-5 can be wrong here, and would be seen to be
    assert (result["top1_error"], result["top5_error"], result["images"]) == (top1, top5, 2 * CLASSES)


@pytest.mark.parametrize("test_resize", [12, 16])
@pytest.mark.parametrize("loader", ["resident", "workers"])
@pytest.mark.parametrize("views", ["centre", "ten-crop"])
def test_evaluate_centre_and_ten_crop_match_the_direct_computation(monkeypatch, runs, views, loader, test_resize):
    run = runs[test_resize]
    probe, result, seen, labels = evaluate_with_probe(monkeypatch, run, views=views, data_loader=loader)
    assert result["crops"] == {"centre": 1, "ten-crop": 10}[views]
    check_against_direct(result, seen, labels, *expected_probs(probe, run, views, []))


@pytest.mark.parametrize("views, scales", [
    ("dense", [8, 11, 16]),
    ("multi-crop", [12, 16]),
    ("144-crop", [8, 16, 20, 28]),  # the 40 x 52 originals' longer side 10, 20, 26, 36: squares 1, 2, 3, 4 apart
])
def test_evaluate_whole_image_views_match_the_direct_computation(monkeypatch, runs, views, scales):
    probe, result, seen, labels = evaluate_with_probe(monkeypatch, runs[12], views=views, scales=scales)
    assert result["scales"] == scales
    check_against_direct(result, seen, labels, *expected_probs(probe, runs[12], views, scales))
