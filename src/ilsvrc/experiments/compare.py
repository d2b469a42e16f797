"""Measured numbers beside the papers' (the records' ``comparisons``)."""


def comparison(what: str, measured: float | None, paper: float, source: str, unit: str = "%",
               lower_is_better: bool | None = True) -> dict:
    """One measured number and its published counterpart (SCHEMA.md);
    ``lower_is_better`` None where neither way is better (a change, a ratio)."""
    return {"what": what, "measured": None if measured is None else round(float(measured), 2), "paper": paper,
            "unit": unit, "source": source, "lower_is_better": lower_is_better}
