"""AlexNet's ablations: the paper network and each single change, top-1 and
top-5 error with their differences from the paper network, beside the
differences the paper reports (Secs. 3.2-3.4, 4.1, 4.2, 7)."""

from ..figures import bars
from .compare import comparison


def run(ex) -> dict:
    variants = ex.plan["variants"]
    results = {v["name"]: ex.train(v["name"].replace(" ", "-").replace("/", "-"), "alexnet", **v["settings"])["final"]
               for v in variants}
    base = results[variants[0]["name"]]
    rows, comparisons = [], []
    for v in variants:
        f = results[v["name"]]
        d1, d5 = f["val_top1_error"] - base["val_top1_error"], f["val_top5_error"] - base["val_top5_error"]
        first = v is variants[0]
        rows.append([v["name"], f["val_top1_error"], f["val_top5_error"], None if first else round(d1, 2),
                     None if first else round(d5, 2), v.get("paper_top1"), v.get("paper_top5"), v.get("source")])
        for key, measured in (("paper_top1", d1), ("paper_top5", d5)):
            if key in v:
                comparisons.append(comparison(f"{v['name']}: change in top-{key[-1]} error", measured, v[key],
                                              f"Krizhevsky et al. 2012, {v['source']}", lower_is_better=None))
    names = [v["name"] for v in variants]
    figure = bars(ex.out / "ablations.png", names, {
        "top-1 error": [results[n]["val_top1_error"] for n in names],
        "top-5 error": [results[n]["val_top5_error"] for n in names]}, ylabel="validation error (%)",
        title="AlexNet and single changes")
    return {
        "tables": [{"title": "Validation error (%) and change from the paper network (points)",
                    "columns": ["network", "top-1", "top-5", "change top-1", "change top-5", "paper change top-1",
                                "paper change top-5", "paper section"], "rows": rows}],
        "figures": [{"file": figure.name, "caption": "Top-1 and top-5 validation error of the paper network and each single change"}],
        "comparisons": comparisons,
    }
