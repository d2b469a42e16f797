"""The figures module: each function writes a real, non-blank PNG; the
kernel mosaic puts each tower in its block and scales each kernel on its own."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ilsvrc import figures

PNG = b"\x89PNG\r\n\x1a\n"


def check_png(path: Path) -> Image.Image:
    assert path.read_bytes()[:8] == PNG
    with Image.open(path) as im:
        im.load()
        image = im.convert("RGB")
    assert image.width > 100 and image.height > 100
    assert len(image.getcolors(maxcolors=1 << 24)) > 1, "a single colour"
    return image


def photo(seed: int, size=(48, 64)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def test_curves_two_panels_and_hline(tmp_path):
    epochs = list(range(1, 11))
    series = [{"label": f"{name} {role}", "x": epochs, "y": [50 / e + d + (role == "test") * 3 for e in epochs],
               "style": "solid" if role == "test" else "dashed"}
              for d, name in enumerate(("20-layer", "56-layer")) for role in ("train", "test")]
    panels = [{"title": "plain", "xlabel": "epoch", "ylabel": "error (%)", "series": series, "hline": 25.0},
              {"title": "ResNet", "xlabel": "epoch", "ylabel": "error (%)", "series": series[:2],
               "ylim": [0, 60]}]
    out = figures.curves(tmp_path / "sub" / "fig6.png", panels, title="ResNet Figure 6")
    assert out == tmp_path / "sub" / "fig6.png"
    image = check_png(out)
    assert image.width > image.height  # side by side
    again = figures.curves(tmp_path / "again.png", panels, title="ResNet Figure 6")
    assert again.read_bytes() == out.read_bytes()  # deterministic


def test_a_curve_of_one_point_is_drawn(tmp_path):
    """A run of one epoch (the resnet-cifar laptop budget) is one point per curve: it shows as a marker, in its
    colour (drawn as a line alone, it was an empty panel)."""
    red = {"label": "plain-56 test", "x": [360], "y": [86.1], "style": "solid", "colour": "#ff0000"}
    image = np.asarray(check_png(figures.curves(tmp_path / "one.png", [{"title": "", "xlabel": "", "ylabel": "",
                                                                          "series": [red], "ylim": [50, 90]}])))
    r, g, b = (image[..., i].astype(int) for i in range(3))
    # red pixels: about 95 for the legend's short line alone (the panel empty), about 255 with the marker drawn
    # in the panel and in the legend (matplotlib's default 6 pt circle at 100 dpi); the threshold between them
    assert ((r > 200) & (g < 60) & (b < 60)).sum() > 175


def test_curves_rejects_unknown_style(tmp_path):
    panel = {"title": "", "xlabel": "", "ylabel": "", "series": [{"label": "a", "x": [0], "y": [0], "style": "wavy"}]}
    with pytest.raises(ValueError):
        figures.curves(tmp_path / "x.png", [panel])


def test_label_root():
    assert figures.label_root("ResNet-20 train") == figures.label_root("ResNet-20 (test)") == "ResNet-20"
    assert figures.label_root("ReLU") != figures.label_root("tanh")


def test_bars_with_missing_value(tmp_path):
    out = figures.bars(tmp_path / "vgg.png", ["A", "A-LRN", "B", "C", "D", "E"],
                       {"top-1 error": [29.6, 29.7, 28.7, 28.1, 27.0, 27.3],
                        "paper top-1": [29.6, None, 28.7, None, 27.0, 25.5]},
                       ylabel="error (%)", title="VGG Table 3")
    check_png(out)
    with pytest.raises(ValueError):
        figures.bars(tmp_path / "bad.png", ["A", "B"], {"x": [1.0]}, ylabel="e")


def test_kernel_mosaic_towers_and_normalisation():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(96, 3, 11, 11)) * rng.uniform(0.1, 5, size=(96, 1, 1, 1))
    weights[5] = 0.3  # constant kernel
    mosaic = figures.kernel_mosaic(torch.from_numpy(weights).float(), towers=2)
    block_h, block_w = 3 * 12 + 1, 16 * 12 + 1
    assert mosaic.shape == (2 * block_h + 5, block_w, 3)
    assert mosaic.min() >= 0 and mosaic.max() <= 1
    # the band between the two tower blocks is blank
    assert (mosaic[block_h:block_h + 5] == 1).all()

    def tile(i):
        tower, j = divmod(i, 48)
        r, c = divmod(j, 16)
        y, x = tower * (block_h + 5) + 1 + r * 12, 1 + c * 12
        return mosaic[y:y + 11, x:x + 11]

    for i in (0, 17, 47, 48, 70, 95):
        t = tile(i)
        if i != 5:
            assert t.min() == pytest.approx(0) and t.max() == pytest.approx(1)
        expected = weights[i].transpose(1, 2, 0)
        expected = (expected - expected.min()) / (expected.max() - expected.min())
        np.testing.assert_allclose(t, expected, atol=1e-5)  # kernel i, in its tower's block
    assert (tile(5) == 0.5).all()
    with pytest.raises(ValueError):
        figures.kernel_mosaic(weights[:95], towers=2)


def test_kernel_grid(tmp_path):
    weights = torch.randn(96, 3, 11, 11)
    out = figures.kernel_grid(tmp_path / "fig3.png", weights, towers=2, title="AlexNet Figure 3")
    image = check_png(out)
    assert image.width > 800
    check_png(figures.kernel_grid(tmp_path / "resnet.png", np.random.default_rng(1).normal(size=(64, 3, 7, 7)),
                                  towers=1))
    with pytest.raises(ValueError):
        figures.kernel_grid(tmp_path / "bad.png", torch.randn(95, 3, 11, 11), towers=2)


def test_predictions(tmp_path):
    items = [{"image": photo(i, (64, 64) if i % 2 else (48, 64)), "label": f"class {i}",
              "top5": [(f"class {(i + k) % 7}", p) for k, p in enumerate((0.5, 0.2, 0.1, 0.05, 0.02))]}
             for i in range(5)]
    items[1]["top5"][0] = ("a very long class name, with commas, that wraps", 0.6)
    image = check_png(figures.predictions(tmp_path / "fig4l.png", items, title="AlexNet Figure 4"))
    assert image.height > image.width / 2  # two rows of four


def test_neighbours(tmp_path):
    rows = [{"query": photo(10 * r), "neighbours": [photo(10 * r + k) for k in range(1, 7)], "label": f"q{r}"}
            for r in range(3)]
    rows[2]["neighbours"] = rows[2]["neighbours"][:4]
    rows[1].pop("label")
    check_png(figures.neighbours(tmp_path / "fig4r.png", rows))
