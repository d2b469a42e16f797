"""The challenge's test set as a submission file (ILSVRC-2012 devkit,
readme.txt, "classification submission"): how the AlexNet paper's test-set
figures were obtained.

The test set is 100,000 unlabelled images in one flat folder
(``ILSVRC2012_test_00000001.JPEG`` ...). The file has one line per image, in
the images' file-name order, each line five class numbers separated by
spaces, the most probable first. A class number is the devkit's
ILSVRC2012_ID (1-1000, the order of the leaf synsets of its
``data/meta.mat``), not ilsvrc's class index (the sorted WordNet ids, as an
ImageFolder), so the devkit is needed to write it.

Images are classified in batches by loader workers, with the checkpoint's
own test transform (the centre crop, or ten crops), exactly as ``ilsvrc
eval``'s workers source makes them, and the file is written to a
temporary name and renamed at the end: an interrupted run leaves no file,
and an existing file is never overwritten.
"""

import io
import tarfile
from pathlib import Path

import torch
from tqdm import tqdm

from . import checkpoint as ckpts
from .data.folders import Split
from .data.labels import devkit_synsets, loose_images
from .data.loaders import Images, loader
from .data.sources import test_batch_size
from .device import default_workers, pick_device
from .errors import UserError
from .evaluate import model_from_checkpoint, predict_proba, transforms_from_checkpoint
from .metrics import TOP_K

META = "meta.mat"  # the devkit's data/meta.mat: struct array `synsets` (ILSVRC2012_ID, WNID, ..., num_children, ...)
DEVKIT_HINT = "the devkit's ILSVRC2012_devkit_t12.tar.gz, its unpacked folder, or its data/meta.mat"


def devkit_ids(devkit) -> dict[str, int]:
    """WordNet id -> ILSVRC2012_ID of the challenge's classes (the synsets
    without children) in the devkit's ``data/meta.mat``; ``devkit``: the
    devkit's .tar.gz, its unpacked folder (or its ``data/``), or meta.mat."""
    meta, where = _meta_file(Path(devkit).expanduser())
    ids = {wnid: number for number, (wnid, _) in devkit_synsets(meta, where).items()}
    if not ids:
        raise UserError(f"{where} lists no classes (no synset without children)")
    return ids


def _meta_file(devkit: Path):
    """``(meta.mat as loadmat reads it: a path or the bytes, a name for messages)``."""
    if devkit.is_dir():
        found = [devkit / META, devkit / "data" / META, *sorted(devkit.glob(f"*/data/{META}"))]
        meta = next((p for p in found if p.is_file()), None)
        if meta is None:
            raise UserError(f"--devkit {devkit} holds no data/{META} (give {DEVKIT_HINT})")
        return str(meta), str(meta)
    if not devkit.is_file():
        raise UserError(f"--devkit {devkit} does not exist (give {DEVKIT_HINT})")
    if not tarfile.is_tarfile(devkit):
        return str(devkit), str(devkit)
    with tarfile.open(devkit) as tar:  # the .tar.gz as downloaded: read its one member, unpack nothing
        member = next((m for m in tar if m.isfile() and Path(m.name).name == META), None)
        if member is None:
            raise UserError(f"--devkit {devkit} holds no data/{META} (give {DEVKIT_HINT})")
        return io.BytesIO(tar.extractfile(member).read()), f"{devkit}:{member.name}"


def devkit_table(classes: list[str], ids: dict[str, int], devkit) -> torch.Tensor:
    """ilsvrc's class index -> the devkit's ILSVRC2012_ID, for a checkpoint's
    ``classes``: each one of the devkit's, and at least five of them."""
    unknown = next((c for c in classes if c not in ids), None)
    if unknown is not None:
        raise UserError(f"class {unknown} of the checkpoint is not one of the {len(ids)} classes of the devkit {devkit}:"
                        " a submission names the challenge's classes, so the network must be trained on them")
    if len(classes) < TOP_K:
        raise UserError(f"a submission line names {TOP_K} classes, and the checkpoint knows only {len(classes)}")
    return torch.tensor([ids[c] for c in classes])


def flat_images(folder) -> list[Path]:
    """The images directly in ``folder``, in file-name order."""
    folder = Path(folder).expanduser()
    if folder.is_file() and tarfile.is_tarfile(folder):
        raise UserError(f"{folder} is an archive: unpack it (mkdir test && tar -xf {folder} -C test) and give the folder"
                        " of its images")
    if not folder.is_dir():
        raise UserError(f"test images folder {folder} does not exist or is not a folder")
    images = loose_images(folder)
    if not images:
        inside = sorted(p.name for p in folder.iterdir() if p.is_dir())
        only = f" directly, only folders ({', '.join(inside[:3])}{', ...' if len(inside) > 3 else ''})" if inside else ""
        raise UserError(f"{folder} holds no images{only}: --submission classifies a flat folder of the test images"
                        " (ILSVRC2012_test_00000001.JPEG ...)")
    return images


def top_classes(model, images: list[Path], transforms, device: torch.device, crops: int, batch_size: int,
                workers: int, progress: bool) -> torch.Tensor:
    """(images, 5): the five most probable classes of each image (ilsvrc's
    indices), most probable first, from batches of ``crops`` test views."""
    split = Split("test", images[0].parent, [(str(p), i) for i, p in enumerate(images)])  # label: the image's line
    batches = loader(Images(split, transforms, crops=crops), batch_size, shuffle=False, workers=workers,
                     pin_memory=device.type == "cuda")
    top = torch.empty(len(images), TOP_K, dtype=torch.long)
    with tqdm(total=len(images), desc="submission", unit="image", disable=not progress, leave=False) as bar:
        for batch in batches:
            if batch.skipped:
                raise UserError(f"{batch.skipped[0]} is not a readable image, and the submission needs a line for every image")
            probs = predict_proba(model, batch.images.to(device, non_blocking=True))
            top[batch.labels] = probs.topk(TOP_K, dim=1).indices.cpu()
            bar.update(len(batch.labels))
    return top


def write_submission(checkpoint, folder, out, devkit, *, ten_crop: bool = False, batch_size: int | None = None,
                     device: str = "auto", workers: int | None = None, progress: bool = True) -> dict:
    """Classify the test images in ``folder`` with ``checkpoint`` and write
    the submission file ``out`` (see the module docstring); ``devkit`` numbers
    the classes (``devkit_ids``). Everything is checked before the first
    image is read; ``out`` must not exist. Returns what was written."""
    out = Path(out).expanduser()
    if out.exists():
        raise UserError(f"{out} exists; remove it or choose another file (a submission is never overwritten)")
    if not out.parent.is_dir():
        raise UserError(f"output folder {out.parent} does not exist")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch-size must be a positive number, not {batch_size}")
    images = flat_images(folder)
    ids = devkit_ids(devkit)
    ckpt = ckpts.load(checkpoint)
    table = devkit_table(ckpt["classes"], ids, devkit)
    dev = pick_device(device)
    model = model_from_checkpoint(ckpt).to(dev).eval()
    transforms = transforms_from_checkpoint(ckpt)
    crops = 10 if ten_crop else 1
    batch_size = batch_size or test_batch_size(ckpt["config"]["optim"]["batch_size"], transforms.image_size, crops, dev)
    top = top_classes(model, images, transforms, dev, crops, batch_size, default_workers(workers), progress)
    text = "".join(" ".join(map(str, row)) + "\n" for row in table[top].tolist())
    ckpts.atomic_write(out, lambda f: f.write(text.encode()))
    return {"out": str(out), "images": len(images), "folder": str(images[0].parent), "crops": crops,
            "classes": len(table), "devkit_classes": len(ids)}
