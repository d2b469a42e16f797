"""The labels of a flat held-out folder, and Kaggle's ImageNet layout.

ImageNet's validation images come in one flat folder, their classes in a
file beside it. ``--val-labels FILE`` (``val_labels=`` in Python) gives that
file for the ``val/`` (or ``test/``) of any ImageFolder root; it may be

- Kaggle's ``LOC_val_solution.csv``: a header ``ImageId,PredictionString``,
  then ``ILSVRC2012_val_00008726,n02119789 255 142 454 329 n02119789 ...``,
  the class the first word of the boxes;
- lines ``IMAGE,CLASS`` or ``IMAGE CLASS`` (more fields may follow, as in
  Tiny ImageNet's ``val_annotations.txt``), IMAGE a file name in the folder,
  with or without its extension;
- one class per line for each image in the order of their file names: WordNet
  ids, or the devkit's ``ILSVRC2012_validation_ground_truth.txt`` (numbers
  1-1000 that the devkit's ``meta.mat``, beside it as in the devkit's
  ``data/`` folder, turns into WordNet ids; reading it needs scipy).

Every image of the folder needs a label, every label an image there and a
class of ``train/``: anything else is a one-line error naming the first
offender. Kaggle's download (imagenet-object-localization-challenge) is
recognised as it is: ``ROOT/ILSVRC/Data/CLS-LOC/{train,val,test}`` with
``ROOT/LOC_val_solution.csv`` and ``ROOT/LOC_synset_mapping.txt`` (the class
order and names), given as ROOT or as its ``ILSVRC/Data/CLS-LOC``.
"""

import os
from pathlib import Path

from torchvision.datasets.folder import IMG_EXTENSIONS

from ..errors import UserError

KAGGLE_IMAGES = ("ILSVRC", "Data", "CLS-LOC")  # under Kaggle's root: train/<wnid>/, val/ and test/ flat
KAGGLE_LABELS = "LOC_val_solution.csv"
KAGGLE_SYNSETS = "LOC_synset_mapping.txt"
DEVKIT_META = "meta.mat"  # beside the devkit's ILSVRC2012_validation_ground_truth.txt
OPTION = ("give their labels with --val-labels FILE (Kaggle's LOC_val_solution.csv,"
          " or the devkit's ILSVRC2012_validation_ground_truth.txt)")


def kaggle_layout(root: Path) -> tuple[Path, Path | None]:
    """``(the folder holding train/ and val/, Kaggle's root or None)`` for
    the data folder ``root``: Kaggle's root, its ``ILSVRC/Data/CLS-LOC``, or
    any other folder (itself, None)."""
    inside = root.joinpath(*KAGGLE_IMAGES)
    if not (root / "train").is_dir() and inside.is_dir():
        return inside, root
    resolved = root.resolve()
    if resolved.parts[-3:] == KAGGLE_IMAGES and any((resolved.parents[2] / f).is_file() for f in (KAGGLE_LABELS, KAGGLE_SYNSETS)):
        return root, resolved.parents[2]
    return root, None


def loose_images(folder: Path) -> list[Path]:
    """The images directly in ``folder`` (not in sub-folders), by file name."""
    with os.scandir(folder) as entries:  # (an entry knows whether it is a file: no stat for each of 50,000)
        return sorted(folder / e.name for e in entries if e.name.lower().endswith(IMG_EXTENSIONS) and e.is_file())


def check_flat(folder: Path) -> None:
    """A flat held-out folder without labels is an error naming the option."""
    if folder.is_dir() and not any(p.is_dir() for p in folder.iterdir()) and loose_images(folder):
        raise UserError(f"{folder} holds images but no class folders: {OPTION}")


def read_labels(path: Path, folder: Path, classes: list[str] | None, where: str = "") -> list[tuple[str, str]]:
    """``(image path, class)`` for each image directly in ``folder``, by file
    name, from the labels file ``path``; every class one of ``classes`` (those
    of ``where``, train/ or the synset mapping; None: any)."""
    images = loose_images(folder) if folder.is_dir() else []
    if not images:
        inside = "class folders, not images" if folder.is_dir() and any(p.is_dir() for p in folder.iterdir()) else "no images"
        raise UserError(f"--val-labels {path} labels the images of a flat {folder}, but it holds {inside}")
    rows, known = _rows(path), None if classes is None else set(classes)
    if rows[0][1] is None:  # one class a line, in the order of the images' file names
        rows = _in_order(path, rows, images)
    by_name = {p.name: p for p in images} | {p.stem: p for p in images}
    labelled: dict[Path, str] = {}
    for n, image, cls in rows:
        found = by_name.get(Path(image).name) or by_name.get(Path(image).stem)
        if found is None:
            raise UserError(f"{path}, line {n}: {folder / image} does not exist (a label for an image that is not there)")
        if found in labelled:
            raise UserError(f"{path}, line {n}: {found.name} is labelled twice")
        if known is not None and cls not in known:
            raise UserError(f"{path}, line {n}: {cls} is not a class of {where or folder.parent / 'train'}")
        labelled[found] = cls
    missing = next((p for p in images if p not in labelled), None)
    if missing is not None:
        raise UserError(f"{missing} has no label in {path}")
    return [(str(p), labelled[p]) for p in images]


def _rows(path: Path) -> list[tuple[int, str | None, str]]:
    """``(line number, image or None, class)`` for each line of the labels
    file ``path`` (Kaggle's header left out); image None: one class a line."""
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--val-labels {path} is not readable ({getattr(e, 'strerror', None) or e})") from None
    rows = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text or (n == 1 and text.split(",")[0].strip('" ').lower() == "imageid"):
            continue  # a blank line; Kaggle's header
        if "," in text:  # IMAGE,CLASS ... (Kaggle's: IMAGE,CLASS X Y X Y CLASS ...)
            image, rest = text.split(",", 1)
            words = rest.split() or [""]
        else:  # IMAGE CLASS ..., or one class a line
            image, *words = text.split()
        row = (n, image.strip('" '), words[0].strip('"')) if words else (n, None, image)
        if not row[2] or (rows and (row[1] is None) != (rows[0][1] is None)):
            raise UserError(f"{path}, line {n}: expected IMAGE,CLASS or IMAGE CLASS (or one class a line, as every line),"
                            f" not {line[:60]!r}")
        rows.append(row)
    if not rows:
        raise UserError(f"--val-labels {path} holds no labels")
    return rows


def _in_order(path: Path, rows: list, images: list[Path]) -> list[tuple[int, str, str]]:
    """One class a line (a WordNet id, or the devkit's ILSVRC2012_ID) for
    each image in the order of their file names: ``(line, image, class)``."""
    if len(rows) != len(images):
        raise UserError(f"{path} has {len(rows)} labels, one a line for the images in file name order,"
                        f" but {images[0].parent} holds {len(images)} images")
    if all(cls.isdigit() for _, _, cls in rows):  # the devkit's numbers
        wnids = devkit_wnids(path.parent / DEVKIT_META, path)
        unknown = next(((n, cls) for n, _, cls in rows if int(cls) not in wnids), None)
        if unknown:
            raise UserError(f"{path}, line {unknown[0]}: {unknown[1]} is not an ILSVRC2012_ID of {path.parent / DEVKIT_META}")
        rows = [(n, None, wnids[int(cls)]) for n, _, cls in rows]
    return [(n, image.name, cls) for (n, _, cls), image in zip(rows, images)]


def devkit_wnids(meta: Path, truth: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> WordNet id of the 1000 classes (the synsets without
    children) in the devkit's ``meta.mat``, as torchvision's ImageNet reads it."""
    if not meta.is_file():
        raise UserError(f"{truth} numbers its classes as the devkit does; their WordNet ids are in the devkit's"
                        f" {DEVKIT_META}, which is not beside it ({meta})")
    return {i: wnid for i, (wnid, _) in devkit_synsets(str(meta), meta).items()}


def devkit_synsets(meta, where) -> dict[int, tuple[str, str]]:
    """ILSVRC2012_ID -> (WordNet id, words) of the 1000 classes (the synsets
    without children) in the devkit's ``meta.mat``: ``meta`` its path or a
    file object (``archives.py`` reads it inside the devkit's archive),
    ``where`` what to call it in messages."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UserError(f"reading the devkit's {where} needs scipy: pip install scipy") from None
    try:
        synsets = loadmat(meta, squeeze_me=True)["synsets"]
        # fields by position, as torchvision's parse_meta_mat reads them: ILSVRC2012_ID, WNID, words, gloss, num_children, ...
        return {int(s[0]): (str(s[1]), str(s[2])) for s in synsets if int(s[4]) == 0}
    except Exception as e:  # whatever loadmat makes of a file that is not the devkit's: the user's to fix
        raise UserError(f"{where} is not the devkit's meta.mat ({type(e).__name__}: {str(e)[:80]})") from None
