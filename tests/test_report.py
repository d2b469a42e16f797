"""ilsvrc.report: two fake experiment directories in, report.md and a
self-contained report.html out; bad inputs refused before anything is
written; and the page rendered by a headless Chromium with its images."""

import base64
import io
import json
import re
import shutil
import subprocess

import pytest
from PIL import Image

from ilsvrc.errors import UserError
from ilsvrc.report import report

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def png(path, colour, size=(160, 120)):
    """A small real PNG: a coloured square on white (not a single colour)."""
    img = Image.new("RGB", size, "white")
    img.paste(colour, (20, 20, size[0] - 20, size[1] - 20))
    img.save(path)


def experiment(root, name, comparisons, figures=("curves.png",), **extra):
    """An experiment directory as src/ilsvrc/experiments/SCHEMA.md describes it."""
    root.mkdir(parents=True)
    for i, f in enumerate(figures):
        png(root / f, ((200, 40 + 80 * i, 40)))
    record = {
        "format": 1, "experiment": name, "title": f"The {name} experiment (Paper 2016, Table 6)",
        "paper": "He, Zhang, Ren & Sun, Deep Residual Learning, CVPR 2016", "budget": "quick",
        "command": f"ilsvrc experiment {name} --budget quick --out {root}", "data": "/data/cifar10",
        "device": "cpu", "versions": {"ilsvrc": "0.1.0", "torch": "2.14.1", "python": "3.11.7"},
        "started": "2026-11-23T01:00:00+00:00", "finished": "2026-11-23T01:03:12+00:00", "duration_s": 192.0,
        "runs": [{"name": "plain-20", "recipe": "resnet-cifar", "model": "plain-20", "settings": {"iterations": 200},
                  "dir": "runs/plain-20", "steps": 200, "epochs": 2, "seconds": 50.1,
                  "final": {"train_error": 40.1, "val_top1_error": 45.3, "val_top5_error": None}}],
        "tables": [{"title": "Table 6: CIFAR-10 test error (%)", "columns": ["network", "depth", "test error", "paper"],
                    "rows": [["plain", 20, 45.3, None], ["residual", 20, 40.234, 8.75]]}],
        "figures": [{"file": f, "caption": f"Figure {f} of {name}"} for f in figures],
        "comparisons": comparisons,
        "notes": [f"{name}: quick budget, the numbers say only that the pipeline runs"],
    }
    record.update(extra)
    (root / "experiment.json").write_text(json.dumps(record))
    return root


@pytest.fixture
def runs(tmp_path):
    far = [{"what": "ResNet-20 test error", "measured": 40.2, "paper": 8.75, "unit": "%",
            "source": "He et al. 2016, Table 6", "lower_is_better": True}]
    near = [{"what": "ResNet-56 test error", "measured": 7.3, "paper": 6.97, "unit": "%",
             "source": "He et al. 2016, Table 6", "lower_is_better": True}]
    a = experiment(tmp_path / "a", "resnet-cifar", far, figures=("curves.png", "figure6.png"))
    b = experiment(tmp_path / "b", "vgg", near, budget="paper", device="NVIDIA H100 80GB HBM3")
    return [a, b]


@pytest.fixture
def written(runs, tmp_path):
    return report(runs, tmp_path / "out")


def test_markdown(written, tmp_path):
    md = written["markdown"].read_text()
    assert written["html"].is_file()
    # the summary, first: one line per experiment with budget, device, duration
    summary = md.split("\n## ")[0]
    assert "- The resnet-cifar experiment (Paper 2016, Table 6): budget quick, cpu, 3 min 12 s" in summary
    assert "- The vgg experiment (Paper 2016, Table 6): budget paper, NVIDIA H100 80GB HBM3, 3 min 12 s" in summary
    assert md.index("## The resnet-cifar") < md.index("## The vgg")
    assert "- **Command:** `ilsvrc experiment vgg --budget quick" in md
    assert "- **Started:** 2026-11-23 01:00:00 UTC" in md
    assert "- **Versions:** ilsvrc 0.1.0, torch 2.14.1, python 3.11.7" in md
    # the runs, every table row (null as a dash, floats with 2 decimals), notes
    assert "| plain-20 | resnet-cifar | plain-20 | iterations=200 | 200 | 2 | 50 s | 40.10 | 45.30 | \u2014 |" in md
    assert md.count("| plain | 20 | 45.30 | \u2014 |") == 2
    assert md.count("| residual | 20 | 40.23 | 8.75 |") == 2
    assert "- resnet-cifar: quick budget, the numbers say only that the pipeline runs" in md
    # measured vs paper: flagged beyond 1 point, not within
    assert "| what | measured | paper | difference | source |" in md
    assert "| ResNet-20 test error | 40.20 % | 8.75 % | **misses by 31.45 points** | He et al. 2016, Table 6 |" in md
    assert "| ResNet-56 test error | 7.30 % | 6.97 % | +0.33 points | He et al. 2016, Table 6 |" in md
    assert md.count("**misses") == 1
    # figures: copied under a per-experiment name, linked relatively
    names = sorted(p.name for p in written["figures"])
    assert names == ["resnet-cifar-curves.png", "resnet-cifar-figure6.png", "vgg-curves.png"]
    for p in written["figures"]:
        assert p.parent == tmp_path / "out" / "figures" and p.is_file()
    assert "![Figure curves.png of vgg](figures/vgg-curves.png)" in md
    assert (tmp_path / "out/figures/resnet-cifar-figure6.png").read_bytes() == (tmp_path / "a/figure6.png").read_bytes()


def test_html_is_self_contained(written):
    page = written["html"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert '<td class="flag">misses by 31.45 points</td>' in page
    assert "<td>+0.33 points</td>" in page and "<td>\u2014</td>" in page
    assert "&amp; Sun" in page  # text escaped
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)" alt="([^"]*)">', page)
    assert len(images) == 3 == page.count("<img") == page.count("<figcaption>")
    assert images[0][1] == "Figure curves.png of resnet-cifar"
    for data, _ in images:
        raw = base64.b64decode(data, validate=True)
        assert raw.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(raw)) as img:
            img.verify()


@pytest.mark.parametrize("breakage", ["missing dir", "no json", "bad json", "missing figure", "no dirs"])
def test_errors_before_writing(runs, tmp_path, breakage):
    out = tmp_path / "out"
    if breakage == "missing dir":
        runs.append(tmp_path / "nowhere")
    elif breakage == "no json":
        (runs[1] / "experiment.json").unlink()
    elif breakage == "bad json":
        (runs[1] / "experiment.json").write_text("{not json")
    elif breakage == "missing figure":
        (runs[1] / "curves.png").unlink()
    else:
        runs = []
    with pytest.raises(UserError) as e:
        report(runs, out)
    assert "\n" not in str(e.value)
    if breakage != "no dirs":
        assert str(runs[-1]) in str(e.value)
    assert not out.exists()


def test_error_leaves_existing_out_unchanged(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("old")
    (runs[0] / "figure6.png").unlink()
    with pytest.raises(UserError, match="figure6.png"):
        report(runs, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_same_experiment_twice_does_not_clash(runs, tmp_path):
    got = report([runs[1], runs[1]], tmp_path / "out")
    assert sorted(p.name for p in got["figures"]) == ["vgg-2-curves.png", "vgg-curves.png"]


def test_browser_renders_page_with_images(written, tmp_path):
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        pytest.skip("no Chromium or Chrome on PATH (looked for " + ", ".join(BROWSERS) + "); .ci/run installs it")
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--virtual-time-budget=5000", f"--user-data-dir={tmp_path / 'profile'}"]
    url = written["html"].resolve().as_uri()
    dom = subprocess.run(common + ["--dump-dom", url], capture_output=True, text=True, timeout=120)
    n = len(written["figures"])
    assert n >= 2
    assert f'data-images-loaded="{n}/{n}"' in dom.stdout, dom.stderr[-2000:]
    shot = tmp_path / "shot.png"
    done = subprocess.run(common + [f"--screenshot={shot}", "--window-size=1200,2000", url],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    with Image.open(shot) as img:
        low, high = img.convert("L").getextrema()
    assert high - low > 50, "the screenshot is one colour: nothing rendered"
