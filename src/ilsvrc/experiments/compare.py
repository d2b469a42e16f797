"""Measured numbers beside the papers' (the records' ``comparisons``)."""

from ..spread import Spread


def comparison(what: str, measured: float | None, paper: float, source: str, unit: str = "%",
               lower_is_better: bool | None = True) -> dict:
    """One measured number and its published counterpart (SCHEMA.md);
    ``lower_is_better`` None where neither way is better (a change, a ratio).
    A ``Spread`` (several runs) adds its standard deviation and count."""
    c = {"what": what, "measured": None if measured is None else round(float(measured), 2), "paper": paper,
         "unit": unit, "source": source, "lower_is_better": lower_is_better}
    if isinstance(measured, Spread) and measured.n > 1:
        c.update(std=round(measured.std, 2), runs=measured.n)
    return c
