"""AlexNet's Figure 1 (Sec. 3.1): training error per epoch of the four-layer
CIFAR-10 network with ReLU and with tanh units, the epochs each takes to
reach 25% training error, and their ratio (the paper: about six)."""

from ..figures import curves
from .compare import comparison

ACTIVATIONS = ("relu", "tanh")


def epochs_to(target: float, epochs: list[float], errors: list[float]) -> float | None:
    """The (fractional) epoch at which the training error first reaches
    ``target``, interpolated linearly between epochs; None if it never does."""
    prev_epoch, prev_error = 0.0, None
    for epoch, error in zip(epochs, errors):
        if error <= target:
            if prev_error is None or prev_error == error:
                return float(epoch)
            return prev_epoch + (prev_error - target) / (prev_error - error) * (epoch - prev_epoch)
        prev_epoch, prev_error = float(epoch), error
    return None


def run(ex) -> dict:
    target = ex.published["target_error"]
    reached, rows, series = {}, [], []
    for act in ACTIVATIONS:
        r = ex.train(act, "alexnet-fig1", activation=act, lr=ex.budget["lr"][act])
        c = r["curve"]
        reached[act] = epochs_to(target, c["epoch"], c["train_error"])
        rows.append([act, ex.budget["lr"][act], reached[act], r["final"]["train_error"], r["final"]["val_top1_error"]])
        series.append({"label": act, "x": c["epoch"], "y": c["train_error"], "style": "solid" if act == "relu" else "dashed"})
    ratio = reached["tanh"] / reached["relu"] if None not in reached.values() else None
    figure = curves(ex.out / "figure1.png", [{"title": "CIFAR-10, four-layer CNN", "xlabel": "epochs",
                                              "ylabel": "training error (%)", "series": series, "hline": target}])
    notes = [] if ratio is not None else [
        f"{' and '.join(a for a in ACTIVATIONS if reached[a] is None)} did not reach {target:g}% training error in "
        f"{max(max(r['curve']['epoch']) for r in ex.runs)} epochs: no ratio"]
    return {
        "tables": [{"title": f"Epochs to {target:g}% training error", "columns": [
            "units", "learning rate", f"epochs to {target:g}%", "final training error", "test error"], "rows": rows},
            {"title": "Speed-up of ReLU over tanh", "columns": ["measured", "paper"],
             "rows": [[None if ratio is None else round(ratio, 2), ex.published["speedup"]]]}],
        "figures": [{"file": figure.name, "caption": f"Figure 1: training error per epoch, ReLU (solid) and tanh "
                                                    f"(dashed); the dotted line is {target:g}%"}],
        "comparisons": [comparison("epochs to 25% training error, tanh / ReLU", ratio, ex.published["speedup"],
                                   ex.published["source"], unit="x", lower_is_better=None)],
        "notes": notes,
    }
