"""``python -m ilsvrc train ARGS`` for torchrun's processes in
test_distributed.py, which also checks, when the run ends its process group,
that no DistributedDataParallel is alive to hold it (``train.Run.leave``):
a group whose last holder is DDP's reducer is freed in the reducer's
destructor, which hung torch 2.11's processes now and then."""

import gc
import importlib
import sys

from torch.nn.parallel import DistributedDataParallel

from ilsvrc.cli import main

train = importlib.import_module("ilsvrc.train")  # the module (the package's `train` is the function)

end_group = train.leave
held = 0  # DistributedDataParallel alive when the group ended


def leave(world):
    global held
    held = sum(isinstance(o, DistributedDataParallel) for o in gc.get_objects())
    end_group(world)


train.leave = leave
code = main(["train", *sys.argv[1:]])
if held:
    print(f"the process group ended while {held} DistributedDataParallel held it", file=sys.stderr)
sys.exit(code or 4 * bool(held))
