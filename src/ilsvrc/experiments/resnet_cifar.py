"""Plain against residual networks on CIFAR-10 (He et al. 2016, Sec. 4.2):
Figure 6's training and test error curves and Table 6's test errors."""

from ..figures import curves
from .compare import comparison


def run(ex) -> dict:
    rows, comparisons, panels = [], [], []
    for kind, prefix in (("plain", "plain"), ("residual", "resnet")):
        series = []
        for depth in ex.budget["depths"]:
            model = f"{prefix}-{depth}"
            r = ex.train(model, "resnet-cifar", model=model)
            paper = ex.published.get(model)
            rows.append([kind, depth, r["final"]["train_error"], r["final"]["val_top1_error"], paper])
            if paper is not None:
                comparisons.append(comparison(f"{model} test error", r["final"]["val_top1_error"], paper,
                                              ex.published["source"]))
            c = r["curve"]
            series += [{"label": f"{kind}-{depth} train", "x": c["step"], "y": c["train_error"], "style": "dashed"},
                       {"label": f"{kind}-{depth} test", "x": c["step"], "y": c["val_top1_error"], "style": "solid"}]
        panels.append({"title": f"{kind} networks", "xlabel": "iteration", "ylabel": "error (%)", "series": series})
    figure = curves(ex.out / "figure6.png", panels, title="CIFAR-10: training (dashed) and test (solid) error")
    return {
        "tables": [{"title": "Table 6: CIFAR-10 error (%)", "columns": ["network", "depth", "training error", "test error", "paper"],
                    "rows": rows}],
        "figures": [{"file": figure.name, "caption": "Figure 6: training (dashed) and test (solid) error per iteration; "
                                                    "plain networks (left), residual networks (right)"}],
        "comparisons": comparisons,
    }
