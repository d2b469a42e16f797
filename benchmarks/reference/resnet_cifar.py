"""Reference trainer: the CIFAR-10 ResNets of He, Zhang, Ren & Sun, "Deep
Residual Learning for Image Recognition" (CVPR 2016), Section 4.2.

An independent implementation, written from the paper alone, for checking the
training of the project's package ``ilsvrc`` on the same data, seed for seed.
It shares NO code with ``ilsvrc``: it imports only torch, torchvision, numpy,
tqdm and the standard library (tests/test_reference.py checks this).

    # the paper's recipe: ResNet-20, 64k iterations, lr 0.1 divided by 10 at 32k and 48k
    python benchmarks/reference/resnet_cifar.py --data ../shared/datasets/cifar10
    # three seeds on the GPU in bfloat16, compiled, decoded images cached, results as JSON
    python benchmarks/reference/resnet_cifar.py --data DIR --seeds 0,1,2 --device cuda \\
        --precision bf16 --compile --cache /tmp/cifar10.pt --json runs.json
    # the plain twin (no shortcuts), ResNet-56, a short schedule (milestones at 1/2 and 3/4)
    python benchmarks/reference/resnet_cifar.py --data DIR --plain --depth 56 --iterations 8000
    # test error every 2000 steps as well (a curve in the JSON)
    python benchmarks/reference/resnet_cifar.py --data DIR --eval-every 2000 --json runs.json

It prints one line per run, in this form (the figures here only illustrate it):

    reference resnet-20 seed 0: test error 8.91%, train error 0.3%, 64000 steps in 210 s

and --json writes the list of the runs' dicts (see ``train``).

The data is an ImageFolder-layout CIFAR-10: DIR/train/<class>/<image>.png|jpg
and the held-out split DIR/test/ (or DIR/val/ where there is no test/).

What the paper says (Sec. 4.2 unless noted) and what this file does:
  * depth 6n+2: a 3x3 conv with 16 filters, then 3 stages of n basic blocks
    (2 3x3 convs each) with 16, 32, 64 filters on 32x32, 16x16, 8x8 maps,
    subsampling by convs of stride 2, global average pooling, a 10-way fc.
  * "identity shortcuts in all cases (i.e., option A)": where the map halves
    and the filters double, the shortcut takes every second pixel and pads the
    extra channels with zeros (Sec. 3.3, option A), so no parameters:
    ResNet-20 has 0.27M (Table 6), exactly 269,722 for 10 classes (272,474
    would be option B's 1x1 projections with BN); ResNet-56 853,018 (0.85M).
  * BN right after each conv, before the ReLU (Sec. 3.4); no dropout.
  * weights initialised as in He et al. 2015 (Sec. 3.4).
  * SGD, mini-batch 128, momentum 0.9, weight decay 1e-4, lr 0.1 divided by
    10 at 32k and 48k iterations, end at 64k (Sec. 4.2, Sec. 3.4).
  * "4 pixels are padded on each side, and a 32x32 crop is randomly sampled
    from the padded image or its horizontal flip"; "the per-pixel mean
    subtracted"; testing on "the single view of the original 32x32 image".
  * The paper trains on 45k images and validates on 5k to choose the
    schedule; its Table 6 numbers train on all 50k, as this does.

Where the paper is silent, the decisions taken here:
  * init: kaiming_normal_(mode="fan_in", nonlinearity="relu"), He 2015 eq. 10
    with n = k^2 c (the input side); BN weight 1, bias 0; the fc keeps
    PyTorch's default init. Convolutions have no bias (BN follows each).
  * pixels scaled to [0, 1] (x / 255) before the mean is subtracted; no
    division by a standard deviation (the paper names only the mean).
  * padding is done AFTER mean subtraction, with zeros, i.e. the pad is the
    mean image (as fb.resnet.torch pads normalised images).
  * the "or its horizontal flip" is a flip of the crop with probability 1/2
    (the same distribution as cropping the flipped padded image).
  * option A pads the extra channels AFTER the kept ones (fb.resnet.torch's
    concatenation with zeros).
  * an epoch is a fresh random permutation of the 50k images; batches of 128
    in that order; the last, short batch (50000 = 390 * 128 + 80) is kept, as
    torch.utils.data.DataLoader does by default; iterations run across epochs
    until 64k, so the last epoch is cut short.
  * weight decay on ALL parameters (BN's and the fc's too), as Caffe does.
  * the loss is the mean cross-entropy over the batch.
  * train error: over the last epoch's worth of batches (ceil(N/128) = 391
    steps), counted on the augmented batches as the network changes along
    them (like the paper's training curves).
  * BN: PyTorch's defaults (momentum 0.1, eps 1e-5); test with the running
    statistics (model.eval()).
  * "float32" on CUDA keeps PyTorch's defaults (cuDNN convolutions may use
    TF32); cudnn.benchmark is switched on for CUDA.
  * random draws: the model's init from torch.manual_seed(seed); the data
    order, crops and flips from a separate CPU torch.Generator seeded with
    seed, drawn an epoch at a time, so they are the same on every device.
"""

import argparse
import hashlib
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.datasets.folder import find_classes, make_dataset
from torchvision.io import ImageReadMode

try:
    from tqdm import tqdm
except ImportError:  # the progress bar is optional
    tqdm = None

SIZE = 32  # CIFAR-10 images are 32x32
PAD = 4  # Sec. 4.2: "4 pixels are padded on each side"
EXTENSIONS = (".png", ".jpg", ".jpeg")  # what torchvision.io.decode_image reads


# -----------------------------------------------------------------------------
# Data: an ImageFolder-layout CIFAR-10, decoded once into uint8 tensors

def held_out_split(root):
    """'test' where root/test/ exists, else 'val'; None if neither does."""
    for split in ("test", "val"):
        if os.path.isdir(os.path.join(root, split)):
            return split
    return None


def list_files(root):
    """(classes, test split name, train samples, test samples); samples are
    (path, class index) in ImageFolder's order: classes sorted by folder name,
    files sorted within each class."""
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        raise FileNotFoundError(f"{root}: no train/ folder (expected {root}/train/<class>/<image>)")
    split = held_out_split(root)
    if split is None:
        raise FileNotFoundError(f"{root}: no test/ or val/ folder beside train/")
    classes, class_to_idx = find_classes(train_dir)
    unknown = sorted(set(find_classes(os.path.join(root, split))[0]) - set(classes))
    if unknown:
        raise ValueError(f"{root}/{split}: classes not in train/: {', '.join(unknown)}")
    train = make_dataset(train_dir, class_to_idx, extensions=EXTENSIONS)
    test = make_dataset(os.path.join(root, split), class_to_idx, extensions=EXTENSIONS, allow_empty=True)
    if not test:
        raise FileNotFoundError(f"{root}/{split}: no images")
    return classes, split, train, test


def files_hash(root, classes, split, train, test):
    """A hash of the sorted file lists (paths relative to root, labels, file
    sizes): a cache made from other files is not reused."""
    h = hashlib.sha256(repr((classes, split)).encode())
    for path, label in train + test:
        h.update(f"{os.path.relpath(path, root)}\t{label}\t{os.path.getsize(path)}\n".encode())
    return h.hexdigest()


def decode(path):
    """One image as a uint8 (3, 32, 32) tensor; a ValueError names the file
    where it is not 32x32 or cannot be decoded."""
    try:
        image = torchvision.io.decode_image(torchvision.io.read_file(path), mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise ValueError(f"{path}: not a readable image ({e})") from None
    if tuple(image.shape[-2:]) != (SIZE, SIZE):
        raise ValueError(f"{path}: {image.shape[-1]}x{image.shape[-2]} image, expected {SIZE}x{SIZE} (CIFAR-10)")
    return image


def decode_all(samples, workers):
    with ThreadPoolExecutor(workers) as pool:  # the decoders release the GIL
        images = list(pool.map(decode, [path for path, _ in samples]))
    return torch.stack(images), torch.tensor([label for _, label in samples], dtype=torch.int64)


def load_folder(root, cache=None, workers=None):
    """CIFAR-10 from an ImageFolder-layout root as a dict: train_images and
    test_images uint8 (N, 3, 32, 32), train_labels and test_labels int64 (N,),
    classes (sorted folder names), test_split ('test' or 'val'), files_hash.

    cache: a file path; the decoded tensors are saved there with the hash of
    the sorted file list and reused while the hash matches."""
    root = os.fspath(root)
    classes, split, train, test = list_files(root)
    digest = files_hash(root, classes, split, train, test)
    if cache is not None and os.path.isfile(cache):
        saved = torch.load(cache, map_location="cpu", weights_only=True)
        if saved.get("files_hash") == digest:
            return saved
    workers = workers or min(8, os.cpu_count() or 1)
    train_images, train_labels = decode_all(train, workers)
    test_images, test_labels = decode_all(test, workers)
    data = dict(train_images=train_images, train_labels=train_labels, test_images=test_images,
                test_labels=test_labels, classes=classes, test_split=split, files_hash=digest)
    if cache is not None:
        os.makedirs(os.path.dirname(os.path.abspath(cache)), exist_ok=True)
        partial = f"{cache}.{os.getpid()}.partial"
        torch.save(data, partial)
        os.replace(partial, cache)  # never a half-written cache
    return data


# -----------------------------------------------------------------------------
# Augmentation (Sec. 4.2), batched on the device

def pixel_mean(images):
    """The per-pixel mean image (3, 32, 32) in [0, 1] units, float32. Summed
    exactly as integers (so it is the same on every device), in chunks."""
    total = sum(chunk.to(torch.int64).sum(0) for chunk in images.split(4096))
    return (total.double() / (255.0 * len(images))).float()


def test_view(images, mean):
    """The single 32x32 view of each image, mean-subtracted (float32)."""
    return images.float().div(255).sub(mean)


def draw_augmentation(n, generator):
    """Random crops and flips for n images: shifts (n, 2) int64 in 0..8, the
    (row, column) of the crop's corner in the 40x40 padded image (4, 4 is
    the image itself), and flips (n,) bool."""
    shifts = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()
    return shifts, flips


def augment(images, mean, shifts, flips):
    """A training batch: uint8 images (B, 3, 32, 32), mean-subtracted,
    zero-padded by 4 (zero is the mean image), each cropped to 32x32 at its
    shift and mirrored where its flip is set. One gather, no loop over images."""
    x = F.pad(test_view(images, mean), (PAD, PAD, PAD, PAD))  # (B, 3, 40, 40)
    b, device = len(x), x.device
    span = torch.arange(SIZE, device=device)
    rows = shifts[:, 0, None] + span  # (B, 32): the rows of each crop
    cols = shifts[:, 1, None] + span  # (B, 32): its columns,
    cols = torch.where(flips[:, None], cols.flip(1), cols)  # right to left where flipped
    return x[torch.arange(b, device=device)[:, None, None, None],
             torch.arange(3, device=device)[None, :, None, None],
             rows[:, None, :, None],
             cols[:, None, None, :]]


def epochs(n, batch_size, generator, device="cpu"):
    """Endless epochs of (indices, shifts, flips) batches: each epoch a fresh
    permutation of the n images, batches in that order, the last short batch
    kept. Drawn an epoch at a time from ``generator`` (a CPU one: the same
    draws on every device), then moved to ``device`` in one go."""
    while True:
        order = torch.randperm(n, generator=generator)
        shifts, flips = draw_augmentation(n, generator)
        order, shifts, flips = order.to(device), shifts.to(device), flips.to(device)
        for start in range(0, n, batch_size):
            yield order[start:start + batch_size], shifts[start:start + batch_size], flips[start:start + batch_size]


# -----------------------------------------------------------------------------
# Model (Sec. 4.2 with Sec. 3.3's option A and Sec. 3.4's BN and init)

def conv3x3(cin, cout, stride=1):
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)  # BN follows: no bias


class ShortcutA(nn.Module):
    """Option A (Sec. 3.3): identity; where the block subsamples, every second
    pixel; where it widens, the extra channels are zeros. No parameters."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.extra, self.stride = cout - cin, stride

    def forward(self, x):
        if self.stride > 1:
            x = x[:, :, ::self.stride, ::self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, 0, self.extra))  # zero channels after the kept ones
        return x


class BasicBlock(nn.Module):
    """Two 3x3 convs: conv-BN-ReLU, conv-BN, + shortcut, ReLU (Fig. 2).
    residual=False: the plain block, without the shortcut."""

    def __init__(self, cin, cout, stride, residual=True):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(cin, cout, stride), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = conv3x3(cout, cout), nn.BatchNorm2d(cout)
        self.shortcut = ShortcutA(cin, cout, stride) if residual else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return F.relu(out)


class ResNet(nn.Module):
    """The CIFAR-10 ResNet of depth 6n+2 (Sec. 4.2); residual=False: its
    plain twin. 6n+2 weighted layers: the first conv, 6n in the blocks, the fc."""

    def __init__(self, depth=20, residual=True, num_classes=10):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"depth {depth}: the CIFAR ResNets have depth 6n+2, n >= 1 (20, 32, 44, 56, 110)")
        n = (depth - 2) // 6
        self.depth, self.residual = depth, residual
        self.conv, self.bn = conv3x3(3, 16), nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, width in enumerate((16, 32, 64)):  # on 32x32, 16x16, 8x8 maps
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1  # "subsampling ... by convolutions with a stride of 2"
                blocks.append(BasicBlock(cin, width, stride, residual))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He et al. 2015, eq. 10: std sqrt(2 / (k^2 c))
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        x = x.mean((2, 3))  # global average pooling
        return self.fc(x)


# -----------------------------------------------------------------------------
# Training (Sec. 4.2) and testing

def resolve_device(device):
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def evaluate(model, images, labels, mean, *, bf16=False, channels_last=False, batch_size=1000):
    """Top-1 error in percent on the single 32x32 views; model in eval mode
    (BN with its running statistics), put back in train mode after."""
    model.eval()
    wrong = torch.zeros((), dtype=torch.int64, device=labels.device)
    with torch.no_grad(), torch.autocast(labels.device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(images), batch_size):
            x = test_view(images[start:start + batch_size], mean)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            wrong += (model(x).argmax(1) != labels[start:start + batch_size]).sum()
    model.train()
    return 100.0 * wrong.item() / len(images)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def sgd(model, lr, momentum, weight_decay, milestones, fused):
    """Sec. 3.4 / 4.2: SGD, momentum 0.9, weight decay 1e-4 (on every
    parameter, as Caffe); lr 0.1, "divide it by 10 at 32k and 48k
    iterations", the scheduler stepped every iteration."""
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay,
                                **({"fused": True} if fused else {}))
    return optimizer, torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(milestones), gamma=0.1)


class Tally:
    """Each step's loss and wrong answers, kept on the device and read only
    at log and eval points (a read is a device sync)."""

    def __init__(self, iterations, steps_per_epoch, device):
        self.losses = torch.zeros(iterations, device=device)
        self.wrong = torch.zeros(iterations, dtype=torch.int64, device=device)
        self.sizes = []  # batch sizes, known on the host
        self.steps_per_epoch, self.device = steps_per_epoch, device

    def add(self, step, loss, logits, y):
        self.losses[step] = loss.detach().float()
        self.wrong[step] = (logits.detach().argmax(1) != y).sum()
        self.sizes.append(len(y))

    def window(self, step):
        """Training error and loss over the last epoch's worth of steps before ``step``."""
        lo = max(0, step - self.steps_per_epoch)
        seen = sum(self.sizes[lo:step])
        error = 100.0 * self.wrong[lo:step].sum().item() / seen
        loss = (self.losses[lo:step] * torch.tensor(self.sizes[lo:step], device=self.device)).sum().item() / seen
        return error, loss

    def show(self, bar, done, iterations, lr):
        bar.update(1)
        if done % 100 == 0 or done == iterations:
            error, loss = self.window(done)
            bar.set_postfix(loss=f"{loss:.3f}", train_err=f"{error:.1f}%", lr=f"{lr:g}")


def setup(device, precision, compile):
    """The torch.device, whether bf16 autocast, whether channels_last (a
    compiled network on a GPU); cuDNN's autotuner on for a GPU."""
    if precision not in ("float32", "bf16"):
        raise ValueError(f"precision {precision!r}: float32 or bf16")
    device = torch.device(resolve_device(device))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return device, precision == "bf16", compile and device.type == "cuda"


def train(data, *, depth=20, residual=True, iterations=64000, milestones=(32000, 48000), batch_size=128,
          lr=0.1, momentum=0.9, weight_decay=1e-4, seed=0, device="cpu", precision="float32", compile=False,
          eval_every=None, progress=True, return_model=False):
    """Train one network on ``data`` (from load_folder) and test it. Returns a
    dict: test_error and train_error (percent), train_loss (mean over the same
    steps as train_error), first_loss (the first step's), final_lr (the
    learning rate after the last step), iterations, epochs
    (images seen / training images), seconds (wall time of the training steps:
    no data loading, no evaluation; compilation included), eval_seconds, seed,
    depth, residual, precision, device, the hyper-parameters, and where
    eval_every is set, curve: [{iteration, train_error, train_loss,
    test_error}] every eval_every steps and at the end. return_model=True adds
    the trained model under "model" (not JSON-serialisable)."""
    device, bf16, channels_last = setup(device, precision, compile)
    # the data, resident on the device as uint8
    train_x, train_y, test_x, test_y = (data[k].to(device) for k in ("train_images", "train_labels", "test_images", "test_labels"))
    n = len(train_x)
    mean = pixel_mean(train_x)  # Sec. 4.2: "the per-pixel mean subtracted"
    steps_per_epoch = math.ceil(n / batch_size)  # the last, short batch kept
    batches = epochs(n, batch_size, torch.Generator().manual_seed(seed), device)

    torch.manual_seed(seed)
    model = ResNet(depth, residual, num_classes=len(data["classes"])).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer, scheduler = sgd(model, lr, momentum, weight_decay, milestones, fused=device.type == "cuda")
    net = torch.compile(model, dynamic=False) if compile else model
    tally = Tally(iterations, steps_per_epoch, device)

    curve, eval_seconds = [], 0.0
    bar = tqdm(total=iterations, desc=f"{'resnet' if residual else 'plain'}-{depth} seed {seed}", dynamic_ncols=True,
               file=sys.stderr) if progress and tqdm is not None else None
    model.train()
    sync(device)
    start = time.perf_counter()
    for step in range(iterations):
        index, shifts, flips = next(batches)  # on the device
        x, y = augment(train_x[index], mean, shifts, flips), train_y[index]
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(x)
            loss = F.cross_entropy(logits, y)  # mean over the batch
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        tally.add(step, loss, logits, y)
        done = step + 1
        if bar is not None:
            tally.show(bar, done, iterations, scheduler.get_last_lr()[0])
        if eval_every and (done % eval_every == 0 or done == iterations):
            sync(device)
            t = time.perf_counter()
            error, mean_loss = tally.window(done)
            curve.append(dict(iteration=done, train_error=error, train_loss=mean_loss,
                              test_error=evaluate(net, test_x, test_y, mean, bf16=bf16, channels_last=channels_last)))
            eval_seconds += time.perf_counter() - t
    sync(device)
    seconds = time.perf_counter() - start - eval_seconds
    if bar is not None:
        bar.close()

    t = time.perf_counter()
    test_error = curve[-1]["test_error"] if curve and curve[-1]["iteration"] == iterations else evaluate(
        net, test_x, test_y, mean, bf16=bf16, channels_last=channels_last)
    eval_seconds += time.perf_counter() - t
    train_error, train_loss = tally.window(iterations)
    result = dict(test_error=test_error, train_error=train_error, train_loss=train_loss,
                  first_loss=tally.losses[0].item(), final_lr=scheduler.get_last_lr()[0], iterations=iterations,
                  epochs=sum(tally.sizes) / n,
                  seconds=seconds, eval_seconds=eval_seconds, seed=seed, depth=depth, residual=residual,
                  precision=precision, device=str(device), compile=compile, batch_size=batch_size, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, milestones=list(milestones),
                  train_images=n, test_images=len(test_x), test_split=data.get("test_split"))
    if eval_every:
        result["curve"] = curve
    if return_model:
        result["model"] = model
    return result


# -----------------------------------------------------------------------------
# Command line

def default_milestones(iterations):
    """1/2 and 3/4 of the iterations, rounded half up: 32000, 48000 for 64000."""
    return (iterations + 1) // 2, (3 * iterations + 2) // 4


def integers(text):
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv=None):
    parser = argparse.ArgumentParser(description="Reference trainer: the CIFAR-10 ResNets of He et al. 2016, "
                                     "Sec. 4.2 (shares no code with ilsvrc).")
    parser.add_argument("--data", required=True, help="ImageFolder-layout CIFAR-10: DIR/train/<class>/, DIR/test/ or DIR/val/")
    parser.add_argument("--depth", type=int, default=20, help="6n+2: 20, 32, 44, 56, 110 (default 20)")
    parser.add_argument("--plain", action="store_true", help="the plain twin: no shortcuts")
    parser.add_argument("--iterations", type=int, default=64000, help="default 64000 (Sec. 4.2)")
    parser.add_argument("--milestones", help="a,b: lr divided by 10 there (default: 1/2 and 3/4 of --iterations)")
    parser.add_argument("--seeds", default="0", help="comma-separated, one run each (default 0)")
    parser.add_argument("--device", default="auto", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--precision", default="float32", choices=("float32", "bf16"))
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument("--eval-every", type=int, help="test every N steps too (a curve in the JSON)")
    parser.add_argument("--cache", help="a file for the decoded images, reused while the file list matches")
    parser.add_argument("--json", help="write the runs' results here, a JSON list")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    def fail(message):  # one line on stderr, exit status 2 (parser.error would print the usage first)
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    try:
        seeds = integers(args.seeds)
        milestones = integers(args.milestones) if args.milestones else default_milestones(args.iterations)
    except ValueError:
        fail("--seeds and --milestones take comma-separated integers")
    if not seeds:
        fail("--seeds: no seed given")
    if args.iterations < 1:
        fail("--iterations must be at least 1")
    if args.depth < 8 or (args.depth - 2) % 6:
        fail(f"--depth {args.depth}: must be 6n+2 with n >= 1 (20, 32, 44, 56, 110)")
    if not os.path.isdir(args.data):
        fail(f"--data {args.data}: no such folder")
    device = resolve_device(args.device)
    if device == "cuda" and not torch.cuda.is_available():
        fail("--device cuda: no CUDA device here")
    try:
        data = load_folder(args.data, cache=args.cache)
    except (FileNotFoundError, ValueError) as e:
        fail(str(e))

    runs = []
    for seed in seeds:
        r = train(data, depth=args.depth, residual=not args.plain, iterations=args.iterations, milestones=milestones,
                  seed=seed, device=device, precision=args.precision, compile=args.compile,
                  eval_every=args.eval_every, progress=not args.no_progress)
        runs.append(r)
        print(f"reference {'resnet' if r['residual'] else 'plain'}-{r['depth']} seed {seed}: "
              f"test error {r['test_error']:.2f}%, train error {r['train_error']:.1f}%, "
              f"{r['iterations']} steps in {r['seconds']:.0f} s", flush=True)
        if args.json:  # rewritten after each run: finished runs survive an interrupted one
            with open(args.json, "w") as f:
                json.dump(runs, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
