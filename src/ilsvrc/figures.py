"""The papers' figures, drawn from the numbers our experiments produce, as PNG files.

- ``curves``: line plots side by side, e.g. AlexNet Figure 1 (training error
  per epoch, ReLU solid against tanh dashed, 25% reference line) and ResNet
  Figure 6 (plain and residual nets, training error dashed, test solid);
- ``bars``: grouped bars, e.g. VGG Table 3's errors per configuration;
- ``kernel_grid`` (with ``kernel_mosaic``): AlexNet Figure 3, the first
  convolution's 96 kernels, one block per tower ("GPU");
- ``predictions``: AlexNet Figure 4 (left), images with their top-5 labels;
- ``neighbours``: AlexNet Figure 4 (right), query images and their six
  nearest training images.

Every function writes one PNG at ``path`` (parent folders created) and
returns ``Path(path)``. Matplotlib's Agg canvas is used directly (no pyplot
state), and the files carry no software/date metadata, so the same numbers
give the same bytes.
"""

import math
import re
from pathlib import Path

import numpy as np
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

DPI = 120
STYLES = {"solid": "-", "dashed": "--", "dotted": ":"}
ROLE = re.compile(r"(\s*\(.*\)|[\s,]+(train|training|test|val|validation|error|err|top-1|top-5))+\s*$", re.I)
CORRECT, OTHER = "#f07470", "#c3d3e6"


def _figure(**kw) -> Figure:
    fig = Figure(**kw)
    FigureCanvasAgg(fig)
    fig.set_dpi(DPI)
    return fig


def _save(fig: Figure, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})
    fig.clear()
    return path


def label_root(label: str) -> str:
    """The part of a series label that names the model, not its role:
    ``"ResNet-20 train"`` and ``"ResNet-20 (test)"`` both give ``"ResNet-20"``."""
    return ROLE.sub("", label).strip() or label


def curves(path, panels: list[dict], *, title: str | None = None) -> Path:
    """Line plots side by side (AlexNet Figure 1, ResNet Figure 6).

    Each panel: ``title``, ``xlabel``, ``ylabel``, ``series`` (dicts with
    ``label``, ``x``, ``y``, ``style`` "solid"/"dashed", optional ``colour``
    and ``legend`` (False: no legend entry of its own, as a second seed's)),
    optional ``hline`` (a dotted reference line) and ``ylim``. Panels with the
    same ylabel share their y axis; series whose labels have the same root
    (``label_root``) get the same colour in every panel.
    """
    if not panels:
        raise ValueError("curves needs at least one panel")
    fig = _figure(figsize=(5.0 * len(panels), 4.0), layout="constrained")
    cycle = rcParams["axes.prop_cycle"].by_key()["color"]
    colours: dict[str, str] = {}
    axes = []
    for i, panel in enumerate(panels):
        share = next((a for a, p in zip(axes, panels) if p.get("ylabel") == panel.get("ylabel")), None)
        ax = fig.add_subplot(1, len(panels), i + 1, sharey=share)
        for s in panel.get("series", []):
            style = s.get("style", "solid")
            if style not in STYLES:
                raise ValueError(f"unknown line style {style!r}; known: {', '.join(STYLES)}")
            root = label_root(s["label"])
            colour = s.get("colour") or colours.setdefault(root, cycle[len(colours) % len(cycle)])
            label = s["label"] if s.get("legend", True) else "_nolegend_"  # (further seeds of a series: one entry)
            marker = "o" if len(s["x"]) < 3 else None  # a line of one point draws nothing (a run of one epoch)
            ax.plot(s["x"], s["y"], STYLES[style], color=colour, label=label, linewidth=1.6, marker=marker)
        if panel.get("hline") is not None:
            ax.axhline(panel["hline"], linestyle=":", color="black", linewidth=1.0)
        if panel.get("ylim") is not None:
            ax.set_ylim(*panel["ylim"])
        ax.set_title(panel.get("title", ""), fontsize=12)
        ax.set_xlabel(panel.get("xlabel", ""), fontsize=11)
        if not (i and panels[i - 1].get("ylabel") == panel.get("ylabel")):
            ax.set_ylabel(panel.get("ylabel", ""), fontsize=11)
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=9)
        axes.append(ax)
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def bars(path, categories: list[str], groups: dict[str, list[float | None]], *, ylabel: str,
         title: str | None = None) -> Path:
    """Grouped bars, one group per category and one bar per key of ``groups``
    (e.g. VGG Table 3: top-1/top-5 error per configuration A to E); None
    values get no bar. Each bar carries its value, to one decimal."""
    for name, values in groups.items():
        if len(values) != len(categories):
            raise ValueError(f"group {name!r} has {len(values)} values for {len(categories)} categories")
    fig = _figure(figsize=(max(5.0, 1.1 * len(categories) * max(1, len(groups)) ** 0.5 + 2), 4.0),
                  layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(groups))
    for j, (name, values) in enumerate(groups.items()):
        offset = (j - (len(groups) - 1) / 2) * width
        kept = [(i + offset, v) for i, v in enumerate(values) if v is not None]
        if not kept:
            ax.bar([], [], width, label=name)
            continue
        xs, ys = zip(*kept)
        bar = ax.bar(xs, ys, width, label=name)
        ax.bar_label(bar, fmt="%.1f", fontsize=8, padding=2)
    ax.set_xticks(range(len(categories)), categories, fontsize=10)
    ax.set_ylabel(ylabel, fontsize=11)
    ax.margins(y=0.12)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title, fontsize=12)
    return _save(fig, path)


def kernel_mosaic(weights, towers: int = 2, *, columns: int = 16) -> np.ndarray:
    """The (H, W, 3) float image of AlexNet Figure 3 at one pixel per weight.

    ``weights`` (K, C, h, w), C 3 (or 1, shown grey). Each kernel is scaled on
    its own to [0, 1] (a constant kernel is 0.5 grey) and drawn as an RGB
    tile; tiles are ``columns`` to a row with a 1-px white gap around them.
    Tower t holds kernels t*K/towers to (t+1)*K/towers - 1 in its own block,
    the blocks stacked top to bottom with an ``h // 2``-px white gap between them
    (AlexNet: 48 kernels a tower, 3 rows of 16).
    """
    if hasattr(weights, "detach"):
        weights = weights.detach().float().cpu().numpy()
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 4 or w.shape[1] not in (1, 3):
        raise ValueError(f"kernels must be (K, 3, h, w), got shape {tuple(w.shape)}")
    k, _, h, wd = w.shape
    if towers < 1 or k % towers:
        raise ValueError(f"{k} kernels cannot be split into {towers} towers")
    lo = w.min(axis=(1, 2, 3), keepdims=True)
    span = w.max(axis=(1, 2, 3), keepdims=True) - lo
    tiles = np.where(span > 0, (w - lo) / np.where(span > 0, span, 1), 0.5)
    tiles = np.broadcast_to(tiles, (k, 3, h, wd)).transpose(0, 2, 3, 1)
    per = k // towers
    cols = min(columns, per)
    rows = math.ceil(per / cols)
    gap = max(2, h // 2)
    block_h, block_w = rows * (h + 1) + 1, cols * (wd + 1) + 1
    out = np.ones((towers * block_h + (towers - 1) * gap, block_w, 3))
    for i in range(k):
        t, j = divmod(i, per)
        r, c = divmod(j, cols)
        y, x = t * (block_h + gap) + 1 + r * (h + 1), 1 + c * (wd + 1)
        out[y:y + h, x:x + wd] = tiles[i]
    return out


def kernel_grid(path, weights, *, towers: int = 2, title: str | None = None) -> Path:
    """AlexNet Figure 3: the first convolution's kernels (96 x 3 x 11 x 11),
    tower 1's above tower 2's, each kernel min-max scaled on its own."""
    mosaic = kernel_mosaic(weights, towers)
    gap = max(2, tuple(weights.shape)[2] // 2)
    scale = max(1, round(960 / mosaic.shape[1]))
    big = mosaic.repeat(scale, axis=0).repeat(scale, axis=1)
    fig = _figure(figsize=(big.shape[1] / DPI, big.shape[0] / DPI))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(big, interpolation="nearest")
    ax.set_axis_off()
    if towers > 1:
        block = (mosaic.shape[0] - (towers - 1) * gap) // towers
        for t in range(towers):
            centre = (t * (block + gap) + block / 2) * scale
            ax.text(-4, centre, f"tower {t + 1}", rotation=90, ha="right", va="center", fontsize=11)
    if title:
        ax.set_title(title, fontsize=12)
    return _save(fig, path)


def predictions(path, items: list[dict], *, title: str | None = None) -> Path:
    """AlexNet Figure 4 (left): images, up to 4 a row, each with its true label
    and its five most probable labels as bars beneath it, the true one red."""
    if not items:
        raise ValueError("predictions needs at least one item")
    cols, rows = min(4, len(items)), math.ceil(len(items) / 4)
    fig = _figure(figsize=(2.8 * cols, 4.4 * rows), layout="constrained")
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[2.4, 1.6] * rows)
    for n, item in enumerate(items):
        r, c = divmod(n, 4)
        ax = fig.add_subplot(grid[2 * r, c])
        ax.imshow(np.asarray(item["image"]), interpolation="nearest")
        ax.set_axis_off()
        names = [str(name) for name, _ in item["top5"]]
        probs = [float(p) for _, p in item["top5"]]
        bx = fig.add_subplot(grid[2 * r + 1, c])
        bx.barh(range(len(probs)), probs, height=0.8,
                color=[CORRECT if name == item["label"] else OTHER for name in names])
        for i, name in enumerate(names):
            bx.text(0.01, i, name if len(name) <= 30 else name[:29] + "…", va="center", fontsize=9)
        bx.set_yticks([])
        bx.invert_yaxis()
        bx.set_xlim(0, 1)
        bx.tick_params(axis="x", labelsize=8)
        bx.set_title(item["label"], fontsize=11, fontweight="bold")
        for side in ("top", "right", "left"):
            bx.spines[side].set_visible(False)
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)


def neighbours(path, rows: list[dict], *, title: str | None = None) -> Path:
    """AlexNet Figure 4 (right): each row a query image (framed, first column)
    and the (up to six) training images nearest to it in feature space."""
    if not rows:
        raise ValueError("neighbours needs at least one row")
    n = max(len(row["neighbours"]) for row in rows)
    fig = _figure(figsize=(1.5 * (n + 1) + 0.3, 1.5 * len(rows)), layout="constrained")
    grid = fig.add_gridspec(len(rows), n + 2, width_ratios=[1, 0.12] + [1] * n)
    for r, row in enumerate(rows):
        ax = fig.add_subplot(grid[r, 0])
        ax.imshow(np.asarray(row["query"]), interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_linewidth(2.0)
        if row.get("label"):
            ax.set_ylabel(row["label"], fontsize=10)
        if r == 0:
            ax.set_title("query", fontsize=10)
        for j, image in enumerate(row["neighbours"]):
            nx = fig.add_subplot(grid[r, j + 2])
            nx.imshow(np.asarray(image), interpolation="nearest")
            nx.set_axis_off()
            if r == 0:
                nx.set_title(f"neighbour {j + 1}", fontsize=9)
    if title:
        fig.suptitle(title, fontsize=13)
    return _save(fig, path)
