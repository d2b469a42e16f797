"""Plain against residual networks on CIFAR-10 (He et al. 2016, Sec. 4.2):
Figure 6's training and test error curves and Table 6's test errors, and
the figure's two claims, each as a difference of means over the seeds with
its standard error: the deepest plain network ends with higher training and
test error than the shallowest (degradation, Fig. 6 left), and its plain
twin with higher errors than the residual network of that depth (Fig. 6,
Table 6)."""

import math

from ..figures import curves
from ..spread import Spread, difference
from .compare import comparison


def claim(higher: str, lower: str, trained: dict, figure: str) -> dict:
    """The claim that run ``higher`` ends with a larger final ``figure``
    than run ``lower``: the difference of their means, its standard error,
    and whether it is positive by more than two of them."""
    a, b = (trained[m]["final"][figure] for m in (higher, lower))
    diff, se = difference(*(v if isinstance(v, Spread) else Spread([v]) for v in (a, b)))
    if math.isnan(se):
        words, holds = ("higher" if diff > 0 else "NOT higher") + " (one seed: no spread to judge by)", diff > 0
    else:
        holds = diff > 2 * se
        words = (f"higher, by {diff / se:.1f} standard errors" if holds else
                 f"NOT higher by 2 standard errors ({diff / se:+.1f})") if se > 0 else ("higher" if diff > 0 else "NOT higher")
    name = "test error" if figure == "val_top1_error" else "training error"
    return {"what": f"{higher} - {lower}, {name}", "difference": round(diff, 2),
            "standard_error": None if math.isnan(se) else round(se, 2), "holds": holds, "verdict": words}


def run(ex) -> dict:
    rows, comparisons, panels, trained = [], [], [], {}
    for kind, prefix in (("plain", "plain"), ("residual", "resnet")):
        series = []
        for depth in ex.budget.get(f"{kind}_depths", ex.budget["depths"]):
            model = f"{prefix}-{depth}"
            r = trained[model] = ex.train(model, "resnet-cifar", model=model)
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
    tables = [{"title": "Table 6: CIFAR-10 error (%)", "columns": ["network", "depth", "training error", "test error", "paper"],
               "rows": rows}]
    plain = sorted(int(m.split("-")[1]) for m in trained if m.startswith("plain"))
    pairs = []
    if len(plain) > 1:  # Fig. 6 left: "the deeper plain net has higher training error, and thus test error"
        pairs.append((f"plain-{plain[-1]}", f"plain-{plain[0]}"))
    if plain and f"resnet-{plain[-1]}" in trained:  # Fig. 6 right, Table 6: residual learning beats its plain twin
        pairs.append((f"plain-{plain[-1]}", f"resnet-{plain[-1]}"))
    claims = [claim(higher, lower, trained, f) for higher, lower in pairs for f in ("train_error", "val_top1_error")]
    if claims:
        tables.append({"title": "Figure 6's claims: the first network's error should be the higher",
                       "columns": ["difference of the final errors", "points", "standard error", "verdict"],
                       "rows": [[c["what"], c["difference"], c["standard_error"], c["verdict"]] for c in claims]})
    return {
        "tables": tables,
        "figures": [{"file": figure.name, "caption": "Figure 6: training (dashed) and test (solid) error per iteration; "
                                                    "plain networks (left), residual networks (right)"}],
        "comparisons": comparisons,
        "claims": claims,
    }
