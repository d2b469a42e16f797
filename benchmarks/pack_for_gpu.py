"""Pack what the GPU check needs so that it travels with the checkout.

The GPU machine reaches nothing outside it: data travels with the working
tree, as ignored paths named in a call's ``carry``, at most 64 MiB in all per
call (the checkout included) and 8 paths. This packs

- CIFAR-10 as a store of its 32x32 JPEGs, byte for byte (``--size 32``:
  about 54 MiB), into ``OUT/cifar10-32``: one call;
- Imagenette at the AlexNet recipe's rescaled size 256 (about 227 MiB) into
  ``OUT/imagenette-256`` in part files of at most ``--part-mib`` MiB,

and prints, for each call, the paths to carry: the parts of a store go over
consecutive calls while the machine is warm (what an earlier call left
stays there), the small files of the store with the last of them. Stores
already packed are reused. Then ``benchmarks/gpu_check.py`` reads them
from ``.gpu/``.

    python benchmarks/pack_for_gpu.py                         # both, from ../shared/datasets, into .gpu/
    python benchmarks/pack_for_gpu.py --only cifar10
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CALL_MIB = 64  # what one call carries, the checkout included
MAX_PATHS = 8  # paths one call may carry
DATASETS = {"cifar10": 32, "imagenette": 256}  # name -> the recipe's stored size (resnet-cifar: 32; alexnet: 256)


def checkout_mib() -> float:
    """What the checkout itself takes in a call: tracked and untracked, not ignored, files."""
    names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    return sum((REPO / n).stat().st_size for n in names if n and (REPO / n).is_file()) / 2**20


def calls(store: Path, room_mib: float) -> list[list[Path]]:
    """The store's files in groups that each fit in ``room_mib`` and 8 paths:
    the big part files one group after another, the small files with the
    last; a store that fits in one call goes as its folder."""
    files = sorted(store.iterdir(), key=lambda f: -f.stat().st_size)
    if sum(f.stat().st_size for f in files) / 2**20 <= room_mib:
        return [[store]]
    groups: list[list[Path]] = [[]]
    used = 0.0
    for f in files:
        mib = f.stat().st_size / 2**20
        if mib > room_mib:
            raise SystemExit(f"pack_for_gpu: error: {f} is {mib:.0f} MiB, more than the {room_mib:.0f} MiB a call carries;"
                             " give a smaller --part-mib")
        if used + mib > room_mib or len(groups[-1]) == MAX_PATHS:
            groups.append([])
            used = 0.0
        groups[-1].append(f)
        used += mib
    return groups


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", type=Path, default=REPO.parent / "shared" / "datasets",
                   help="folder holding cifar10/ and imagenette/ (default: ../shared/datasets)")
    p.add_argument("--out", type=Path, default=REPO / ".gpu", help="where the stores go (default: .gpu, ignored by git)")
    p.add_argument("--only", help=f"comma-separated, of {', '.join(DATASETS)}")
    p.add_argument("--part-mib", type=float, default=50, help="largest part file in MiB (default: 50)")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--json", help="also write the plan of calls to this file")
    a = p.parse_args(argv)
    names = a.only.split(",") if a.only else list(DATASETS)
    if unknown := sorted(set(names) - set(DATASETS)):
        p.error(f"--only: unknown {', '.join(unknown)}; one of {', '.join(DATASETS)}")
    from ilsvrc.data.store import is_store, pack

    room = CALL_MIB - checkout_mib() - 1  # a MiB to spare for what changes before the call
    plan = {}
    for name in names:
        source, store = a.datasets / name, a.out / f"{name}-{DATASETS[name]}"
        if not is_store(store):
            if not source.is_dir():
                print(f"{name}: {source} is not here; skipped")
                continue
            pack(source, store, size=DATASETS[name], encoding="jpeg", part_mib=a.part_mib, workers=a.workers)
        groups = calls(store, room)
        plan[name] = [[str(f.relative_to(REPO)) if f.is_relative_to(REPO) else str(f) for f in g] for g in groups]
        print(f"{name}: {store} in {len(groups)} call(s) of at most {room:.0f} MiB each (the checkout takes "
              f"{CALL_MIB - 1 - room:.1f} MiB)")
        for i, g in enumerate(plan[name], 1):
            print(f"  call {i}: carry {json.dumps(g)}")
    if a.json:
        Path(a.json).write_text(json.dumps(plan, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
