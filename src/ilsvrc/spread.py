"""A figure measured over several runs: its mean, standard deviation and count.

The papers mostly report one run; ResNet's Table 6 gives "best (mean +- std)"
over 5 runs for ResNet-110, and airbench states every figure with the number
of runs behind it. ``Spread`` is a float (the mean, so tables, differences
and ratios use it as they use one run's figure) that also carries the
sample standard deviation and the number of runs; ``plain`` turns it into
``{"mean", "std", "n"}`` for JSON, and the report shows ``mean ± std (n)``.
"""

import math
import statistics


class Spread(float):
    """The mean of ``values``, with ``std`` (sample standard deviation, 0 for
    one run) and ``n`` (the number of runs)."""

    def __new__(cls, values):
        values = [float(v) for v in values]
        if not values:
            raise ValueError("a spread needs at least one value")
        self = super().__new__(cls, statistics.fmean(values))
        self.values = values
        self.n = len(values)
        self.std = statistics.stdev(values) if self.n > 1 and all(map(math.isfinite, values)) else 0.0
        return self

    def __str__(self) -> str:
        return f"{float(self):.2f} ± {self.std:.2f} ({self.n} runs)"

    def to_dict(self) -> dict:
        return {"mean": round(float(self), 4), "std": round(self.std, 4), "n": self.n}


def plain(value):
    """``value`` with every Spread (in lists, tuples and dicts) as its dict, for JSON."""
    if isinstance(value, Spread):
        return value.to_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def mean_curve(curves: list[list[float]]) -> list[float]:
    """Point by point mean of curves of one length (the runs of one recipe);
    the first curve where lengths differ (runs stopped at different points)."""
    if len({len(c) for c in curves}) != 1:
        return list(curves[0])
    return [statistics.fmean(points) for points in zip(*curves)]


def difference(a: Spread, b: Spread) -> tuple[float, float]:
    """``a - b`` and its standard error, ``sqrt(std_a^2 / n_a + std_b^2 / n_b)``
    (the runs of each independent; NaN where either has one run, whose
    spread is unknown)."""
    if a.n < 2 or b.n < 2:
        return float(a) - float(b), math.nan
    return float(a) - float(b), math.sqrt(a.std**2 / a.n + b.std**2 / b.n)


def verdict(diff: float, se: float, k: float = 2.0) -> str:
    """Whether a difference is within ``k`` standard errors of zero, in words."""
    if not math.isfinite(se):
        return "no verdict: a spread needs two runs or more on each side"
    if abs(diff) <= k * se:
        return f"within {k:g} standard errors"
    return f"NOT within {k:g} standard errors ({abs(diff) / se:.1f} SE)" if se > 0 else f"NOT within {k:g} standard errors"
