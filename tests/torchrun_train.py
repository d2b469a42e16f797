"""``python -m ilsvrc train ARGS`` for torchrun's processes in
test_distributed.py, which also checks (and, with $SHARES set, notes
which store items each rank's stream reads), when the run ends its process group,
that no DistributedDataParallel is alive to hold it (``train.Run.leave``):
a group whose last holder is DDP's reducer is freed in the reducer's
destructor, which hung torch 2.11's processes now and then."""

import gc
import importlib
import os
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

if os.environ.get("SHARES"):  # test_distributed's shares: each rank notes the store items its stream reads
    from ilsvrc.data.streamed import StreamedSplit

    read = StreamedSplit._read

    def noted(self, indices):
        with open(os.path.join(os.environ["SHARES"], f"{self.split.name}-rank{os.environ['RANK']}.txt"), "a") as f:
            f.write("".join(f"{i}\n" for i in indices))
        return read(self, indices)

    StreamedSplit._read = noted
if os.environ.get("HIDDEN_UNITS"):  # AlexNet's fc6 and fc7 narrow, as conftest.narrow_heads in the test's process
    import ilsvrc.models.alexnet

    ilsvrc.models.alexnet.HIDDEN_UNITS = int(os.environ["HIDDEN_UNITS"])
code = main(["train", *sys.argv[1:]])
if held:
    print(f"the process group ended while {held} DistributedDataParallel held it", file=sys.stderr)
sys.exit(code or 4 * bool(held))
