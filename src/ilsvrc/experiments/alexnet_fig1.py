"""AlexNet's Figure 1 (Sec. 3.1): training error per epoch of the four-layer
CIFAR-10 network with ReLU and with tanh units, the epochs each takes to
reach 25% training error, and their ratio (the paper: about six).

"The learning rates for each network were chosen independently to make
training as fast as possible": a budget gives each unit one rate, or a list
of rates (a sweep), of which the one that reaches 25% in the fewest epochs
(over its seeds; failing that, the lowest final training error) is the
unit's, and the sweep's table shows them all. With
``stop_at_target`` each run stops at the end of the first epoch at or
below 25%, which is all the figure's ratio needs.
"""

import math

from ..figures import curves
from ..spread import Spread
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


def _reached(target: float, record: dict) -> list[float | None]:
    """Epochs to ``target`` of each seed of a run's record."""
    return [epochs_to(target, r["curve"]["epoch"], r["curve"]["train_error"]) for r in record["each"]]


def _diverged(record: dict) -> bool:
    return any("diverged" in r for r in record["each"])


def _speed(tried: dict) -> tuple:
    """How fast a rate trained (smaller is faster): every seed at the target,
    by its mean epochs; else by its mean final training error; a rate that
    diverged last."""
    reached = tried["epochs"]
    if _diverged(tried["record"]):
        return 2, 0.0
    if None not in reached:
        return 0, sum(reached) / len(reached)
    return 1, float(tried["record"]["final"]["train_error"])


def _spread(values: list[float | None]):
    """A Spread over the seeds (one seed: its value), or None if any seed has no value."""
    if None in values or not values:
        return None
    return Spread(values) if len(values) > 1 else values[0]


def run(ex) -> dict:
    target = ex.published["target_error"]
    stop = {"until_train_error": target} if ex.budget.get("stop_at_target") else {}
    chosen, sweep, series = {}, [], []
    for act in ACTIVATIONS:
        rates = ex.budget["lr"][act]
        rates = rates if isinstance(rates, list) else [rates]
        tried = []
        for rate in rates:
            record = ex.train(act if len(rates) == 1 else f"{act}-lr{rate:g}", "alexnet-fig1", activation=act, lr=rate,
                              may_diverge=len(rates) > 1, **stop)
            tried.append({"lr": rate, "record": record, "epochs": _reached(target, record)})
        chosen[act] = min(tried, key=_speed)
        for t in tried:
            sweep.append([act, t["lr"], "diverged" if _diverged(t["record"]) else _spread(t["epochs"]),
                          t["record"]["final"]["train_error"],
                          "yes" if t is chosen[act] else ""])
            for k, r in enumerate(t["record"]["each"]):
                series.append({"label": f"{act}, lr {t['lr']:g}", "legend": k == 0, "x": r["curve"]["epoch"],
                               "y": r["curve"]["train_error"], "style": "solid" if act == "relu" else "dashed"})
    relu, tanh = chosen["relu"], chosen["tanh"]
    ratio, bounded = _ratio(relu, tanh)
    notes = []
    if None in relu["epochs"]:
        notes.append(f"relu did not reach {target:g}% training error in {_last(relu)} epochs: no ratio")
    elif bounded:
        missed, seeds = sum(e is None for e in tanh["epochs"]), len(tanh["epochs"])
        notes.append(f"tanh did not reach {target:g}% training error in {_last(tanh)} epochs"
                     f"{f' ({missed} of {seeds} seeds)' if seeds > 1 else ''}: the ratio is a lower bound (its last"
                     f" epoch / ReLU's epochs), at least {float(ratio):.2f}")
    rows = [[a, chosen[a]["lr"], _spread(chosen[a]["epochs"]), chosen[a]["record"]["final"]["train_error"],
             chosen[a]["record"]["final"]["val_top1_error"]] for a in ACTIVATIONS]
    tables = [{"title": f"Epochs to {target:g}% training error", "columns": [
        "units", "learning rate", f"epochs to {target:g}%", "final training error", "test error"], "rows": rows}]
    if len(sweep) > len(ACTIVATIONS):
        tables.append({"title": f"Learning-rate sweep: the fastest to {target:g}% is each unit's rate",
                       "columns": ["units", "learning rate", f"epochs to {target:g}%", "final training error", "chosen"],
                       "rows": sweep})
    tables.append({"title": f"Speed-up of ReLU over tanh (epochs to {target:g}%, tanh / ReLU, seed by seed)",
                   "columns": ["measured", "as", "paper"],
                   "rows": [[ratio, "at least (a lower bound)" if bounded else "measured", ex.published["speedup"]]]})
    figure = curves(ex.out / "figure1.png", [{"title": "CIFAR-10, four-layer CNN", "xlabel": "epochs",
                                              "ylabel": "training error (%)", "series": series, "hline": target}])
    return {
        "tables": tables,
        "figures": [{"file": figure.name, "caption": f"Figure 1: training error per epoch, ReLU (solid) and tanh "
                                                    f"(dashed); the dotted line is {target:g}%"}],
        "comparisons": [comparison(f"epochs to {target:g}% training error, tanh / ReLU{' (at least)' if bounded else ''}",
                                   ratio, ex.published["speedup"], ex.published["source"], unit="x",
                                   lower_is_better=None)],
        "claims": [_claim(ratio, bounded, relu, tanh, target)],
        "notes": notes,
    }


def _last(chosen: dict) -> int:
    """The last epoch any seed of a unit's chosen rate trained."""
    return max((max(r["curve"]["epoch"], default=0) for r in chosen["record"]["each"]), default=0)


def _ratio(relu: dict, tanh: dict) -> tuple:
    """tanh's epochs to the target over ReLU's, seed by seed (a Spread; one
    seed: its value), and whether it is a lower bound: where a tanh seed
    never reached the target, its last epoch stands for its epochs. None
    where a ReLU seed never reached it."""
    ratios, bounded = [], False
    for r_epochs, t_epochs, t_run in zip(relu["epochs"], tanh["epochs"], tanh["record"]["each"]):
        if r_epochs is None:
            return None, False
        if t_epochs is None:
            t_epochs, bounded = max(t_run["curve"]["epoch"], default=0), True
        ratios.append(t_epochs / r_epochs)
    return _spread(ratios), bounded


def _claim(ratio, bounded: bool, relu: dict, tanh: dict, target: float) -> dict:
    """Sec. 3.1's claim: ReLU reaches ``target`` faster than tanh (more than
    1x, by more than two standard errors of the seeds' ratios)."""
    what = f"epochs to {target:g}% training error, tanh / ReLU"
    if ratio is None:
        return {"what": what, "ratio": None, "standard_error": None, "holds": False,
                "verdict": "not measured: ReLU did not reach the target (see the notes)"}
    n = getattr(ratio, "n", 1)
    se = ratio.std / math.sqrt(n) if n > 1 else math.nan
    holds = ratio > 1 and (n == 1 or ratio - 1 > 2 * se)
    words = (f"ReLU {'at least ' if bounded else ''}{float(ratio):.2f}x as fast (lr {relu['lr']:g} against tanh's "
             f"{tanh['lr']:g})" + ("" if n > 1 else ", one seed: no spread to judge by"))
    return {"what": what, "ratio": round(float(ratio), 2), "standard_error": None if math.isnan(se) else round(se, 2),
            "holds": bool(holds), "verdict": words if holds else f"NOT faster by 2 standard errors: {words}"}

