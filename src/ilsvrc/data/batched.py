"""The papers' transforms on whole batches, on any device (GPU or CPU).

``BatchTransforms`` does what ``PaperTransforms`` does to one image, to a
batch of stored uint8 squares ``(B, 3, R, R)`` at once: the training view
(window, reflection, PCA lighting, mean subtraction) and the test views
(centre crop, ten crops, the whole rescaled square). The random draws are
the same numbers, made by the same counter-based generator from each image's
seed, for the whole batch at once on the device, so the batched path gives
the reference path's numbers (tests compare them on the CPU) without work
per image on the host.

Windows of the network's input size (AlexNet's random crops, CIFAR's padded
crops) are cut for the whole batch at once: one gather kernel on a GPU, a
loop of slice copies on the CPU (several times faster there). Windows that
are rescaled (VGG and ResNet scale jittering, GoogLeNet's area crops) differ
in size from image to image and go through the reference code one image at
a time, on the batch's device.
"""

import torch
from torch.nn import functional as F

from .transforms import (U_FLIP, U_LEFT, U_NORMAL, U_TOP, PaperTransforms, crop_places, normals, resize_float,
                         starts, uniforms)


class BatchTransforms:
    """``PaperTransforms`` (the ``reference``) on whole batches of uint8 squares on ``device``."""

    def __init__(self, reference: PaperTransforms, device: torch.device):
        self.reference = reference
        self.size = reference.image_size
        r, p = reference.stats.size, reference.padding
        # the mean as a full square, padded with zeros like the padded images (ResNet Sec. 4.2)
        self.mean = F.pad(reference.mean.to(device).expand(3, r, r), (p, p, p, p)).contiguous()
        self.mean_unpadded = reference.mean.to(device)
        self.eigvec = reference.stats.eigvec.to(device)
        self.eigval = reference.stats.eigval.to(device)
        self.device = device
        self._ramp = torch.arange(self.size, device=device)

    def _crop(self, src: torch.Tensor, mean: torch.Tensor | None, tops: torch.Tensor, lefts: torch.Tensor,
              flips: torch.Tensor, gather: bool | None = None) -> torch.Tensor:
        """Per-image S x S crops of ``src`` minus the same crops of ``mean``
        (if given), (B, 3, S, S) float. On a GPU one gather kernel for the
        whole batch; on the CPU a loop of slice copies."""
        if gather is None:
            gather = src.device.type != "cpu"
        s = self.size
        if not gather:
            x = torch.empty(len(src), 3, s, s, dtype=torch.float32, device=src.device)
            for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist())):
                if mean is None:
                    x[i] = src[i, :, t : t + s, l : l + s]
                else:
                    torch.sub(src[i, :, t : t + s, l : l + s], mean[:, t : t + s, l : l + s], out=x[i])
            if flips.any():
                x[flips] = x[flips].flip(-1)
            return x
        rows = tops[:, None] + self._ramp  # (B, S)
        cols = torch.where(flips[:, None], lefts[:, None] + s - 1 - self._ramp, lefts[:, None] + self._ramp)
        b = torch.arange(len(src), device=src.device)[:, None, None]
        r, c = rows[:, :, None], cols[:, None, :]
        x = src[b, :, r, c].permute(0, 3, 1, 2).float()  # (B, 3, S, S), channels_last in memory
        return x if mean is None else x - mean[:, r, c].permute(1, 0, 2, 3)

    @property
    def fixed_windows(self) -> bool:
        """Whether every training window is an S x S window of the (padded)
        square with no photometric change: the views that ``draws`` and
        ``views`` make for whole batches, inside a captured step too."""
        return not (self.reference.resizes or self.reference.photometric)

    def draws(self, seeds: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The draws of fixed-size windows for images with ``seeds`` (int64,
        on the device), as ``PaperTransforms.draw`` makes them: window tops
        and lefts in padded coordinates, reflections, and the PCA lighting
        offsets (B, 3) in 0-255 units (zeros without lighting)."""
        ref = self.reference
        u = uniforms(seeds)
        room = ref.stats.size + 2 * ref.padding - self.size + 1
        tops, lefts = starts(u[:, U_TOP], room), starts(u[:, U_LEFT], room)
        flips = (u[:, U_FLIP] < 0.5) & ref.flip
        alphas = normals(u[:, U_NORMAL : U_NORMAL + 4]).float() * ref.pca_lighting  # (B, 3)
        offsets = 255.0 * (alphas * self.eigval) @ self.eigvec.T  # row i: P (a_i * l)
        return tops, lefts, flips, offsets

    def views(self, imgs: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor,
              offsets: torch.Tensor, gather: bool | None = None) -> torch.Tensor:
        """(B, 3, S, S) float training views of uint8 ``imgs`` under ``draws``:
        the window of the padded image minus that of the padded mean,
        reflected, plus the lighting offset."""
        p = self.reference.padding
        if p:
            imgs = F.pad(imgs, (p, p, p, p))
        x = self._crop(imgs, self.mean, tops, lefts, flips, gather)
        if self.reference.pca_lighting:
            x = x + offsets[:, :, None, None]
        return x

    def train(self, imgs: torch.Tensor, seeds) -> torch.Tensor:
        """(B, 3, S, S) float training views of uint8 ``imgs``, the i-th drawn
        with seed ``seeds[i]`` (a list or an int64 tensor)."""
        ref = self.reference
        if not self.fixed_windows:  # windows of different sizes: one image at a time
            seeds = seeds.tolist() if torch.is_tensor(seeds) else seeds
            return torch.stack([ref.apply(img, ref.draw(s), self.mean_unpadded) for img, s in zip(imgs, seeds)])
        return self.views(imgs, *self.draws(torch.as_tensor(seeds, dtype=torch.long).to(imgs.device)))

    def square(self, imgs: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """(B, 3, Q, Q): the mean-subtracted squares rescaled to ``size``
        (default: test_resize), as ``PaperTransforms.square``."""
        return resize_float(imgs.float() - self.mean_unpadded, size or self.reference.test_resize)

    def test(self, imgs: torch.Tensor, crops: int = 1) -> torch.Tensor:
        """(B, crops, 3, S, S): the centre crop, or the ten crops in torchvision's
        order, of the squares rescaled to test_resize."""
        ref = self.reference
        places, n = crop_places(ref.test_resize, self.size, crops), len(imgs)
        if ref.test_resize == ref.stats.size:  # crops of the stored square: uint8 crops, then the mean
            src, mean = imgs, self.mean_unpadded.expand(3, ref.stats.size, ref.stats.size)
        else:
            src, mean = self.square(imgs), None
        views = []
        for top, left, flip in places:
            tops = torch.full((n,), top, device=imgs.device)
            lefts = torch.full((n,), left, device=imgs.device)
            flips = torch.full((n,), flip, device=imgs.device)
            views.append(self._crop(src, mean, tops, lefts, flips))
        return torch.stack(views, 1)
