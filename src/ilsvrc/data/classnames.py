"""Human-readable names for class folders named by WordNet id.

``ilsvrc2012_classes.tsv`` holds the 1000 ILSVRC-2012 classes in class-index
order (WordNet id, tab, the short name torchvision uses).
"""

from functools import cache
from importlib import resources


@cache
def ilsvrc2012() -> dict[str, str]:
    """WordNet id -> name for the 1000 ILSVRC-2012 classes."""
    text = resources.files(__package__).joinpath("ilsvrc2012_classes.tsv").read_text()
    rows = (line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {wnid: name for wnid, name in rows}


def display_name(cls: str) -> str:
    """``n01440764`` -> ``tench``; a folder name that is not a WordNet id stays as it is."""
    return ilsvrc2012().get(cls, cls)
