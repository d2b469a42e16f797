"""Human-readable names for class folders named by WordNet id.

``ilsvrc2012_classes.tsv`` holds the 1000 ILSVRC-2012 classes in class-index
order (WordNet id, tab, the short name torchvision uses). A dataset may bring
its own names: Kaggle's ``LOC_synset_mapping.txt`` (``read_synsets``), whose
names a dataset, a packed store and a checkpoint keep, and which come first.
"""

from functools import cache
from importlib import resources
from pathlib import Path

from ..errors import UserError


@cache
def ilsvrc2012() -> dict[str, str]:
    """WordNet id -> name for the 1000 ILSVRC-2012 classes."""
    text = resources.files(__package__).joinpath("ilsvrc2012_classes.tsv").read_text()
    rows = (line.split("\t", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {wnid: name for wnid, name in rows}


def display_name(cls: str, names: dict[str, str] | None = None) -> str:
    """``n01440764`` -> ``tench``: the name in ``names`` (a dataset's own),
    else ILSVRC-2012's; a folder name that is neither stays as it is."""
    return (names or {}).get(cls) or ilsvrc2012().get(cls, cls)


def read_synsets(path: Path) -> dict[str, str]:
    """WordNet id -> name, in the file's order, from lines ``n01440764 tench,
    Tinca tinca`` (Kaggle's ``LOC_synset_mapping.txt``): the first name of each."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not readable ({getattr(e, 'strerror', None) or e})") from None
    names = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        wnid, _, words = line.strip().partition(" ")
        if wnid in names:
            raise UserError(f"{path}, line {n}: {wnid} is there twice")
        names[wnid] = words.split(",")[0].strip() or wnid
    if not names:
        raise UserError(f"{path} names no classes (expected lines like 'n01440764 tench, Tinca tinca')")
    return names
