"""The paper's transforms on whole batches, on any device (GPU or CPU).

``BatchTransforms`` does what ``PaperTransforms`` does to one image, to a
batch of uint8 images ``(B, 3, R, R)`` at once: mean subtraction, the random
224 crop, the reflection and PCA lighting for training; the centre crop or
ten crops for testing. The random draws are the same ``Draw`` objects, made
by the same per-image generators, so the batched path gives the reference
path's numbers (tests compare them on the CPU).
"""

import torch

from .transforms import Draw, PaperTransforms


class BatchTransforms:
    def __init__(self, reference: PaperTransforms, device: torch.device):
        self.reference = reference
        self.size = reference.image_size
        self.mean = reference.mean.to(device).expand(3, reference.stats.size, reference.stats.size).contiguous()
        self.eigvec = reference.stats.eigvec.to(device)
        self.eigval = reference.stats.eigval.to(device)
        self.device = device
        self._ramp = torch.arange(self.size, device=device)

    def draws(self, seeds: list[int]) -> list[Draw]:
        return [self.reference.draw(torch.Generator().manual_seed(s)) for s in seeds]

    def _crop(self, imgs: torch.Tensor, tops: torch.Tensor, lefts: torch.Tensor, flips: torch.Tensor,
              gather: bool | None = None) -> torch.Tensor:
        """Per-image crops of ``imgs`` minus the same crops of the mean image,
        (B, 3, S, S) float. On a GPU one gather kernel for the whole batch; on
        the CPU a loop of slice copies, which is several times faster there."""
        if gather is None:
            gather = imgs.device.type != "cpu"
        s = self.size
        if not gather:
            x = torch.empty(len(imgs), 3, s, s, dtype=torch.float32, device=imgs.device)
            for i, (t, l) in enumerate(zip(tops.tolist(), lefts.tolist())):
                torch.sub(imgs[i, :, t : t + s, l : l + s], self.mean[:, t : t + s, l : l + s], out=x[i])
            if flips.any():
                x[flips] = x[flips].flip(-1)
            return x
        rows = tops[:, None] + self._ramp  # (B, S)
        cols = torch.where(flips[:, None], lefts[:, None] + s - 1 - self._ramp, lefts[:, None] + self._ramp)
        b = torch.arange(len(imgs), device=imgs.device)[:, None, None]
        r, c = rows[:, :, None], cols[:, None, :]
        x = imgs[b, :, r, c].permute(0, 3, 1, 2).float()  # (B, 3, S, S), channels_last in memory
        return x - self.mean[:, r, c].permute(1, 0, 2, 3)

    def train(self, imgs: torch.Tensor, draws: list[Draw]) -> torch.Tensor:
        """(B, 3, S, S) float training views of uint8 ``imgs`` under ``draws``."""
        dev = imgs.device
        tops = torch.tensor([d.top for d in draws], device=dev)
        lefts = torch.tensor([d.left for d in draws], device=dev)
        flips = torch.tensor([d.flip for d in draws], device=dev)
        x = self._crop(imgs, tops, lefts, flips)
        if self.reference.pca_lighting:
            alphas = torch.stack([d.alpha for d in draws]).to(dev)  # (B, 3)
            offsets = 255.0 * (alphas * self.eigval) @ self.eigvec.T  # row i: P (a_i * l)
            x.add_(offsets[:, :, None, None])
        return x

    def test(self, imgs: torch.Tensor, crops: int = 1) -> torch.Tensor:
        """(B, crops, 3, S, S): the centre crop, or the ten crops in torchvision's order."""
        n, room = len(imgs), self.reference.stats.size - self.size
        centre = int(round(room / 2.0))
        if crops == 1:
            places = [(centre, centre, False)]
        elif crops == 10:
            corners = [(0, 0), (0, room), (room, 0), (room, room), (centre, centre)]
            # torchvision's ten_crop: five crops, then the same five of the reflected image
            # (whose centre crop sits at room - centre from the left when room is odd)
            mirrored = [(0, room), (0, 0), (room, room), (room, 0), (centre, room - centre)]
            places = [(t, l, False) for t, l in corners] + [(t, l, True) for t, l in mirrored]
        else:
            raise ValueError(f"test crops must be 1 or 10, not {crops}")
        views = []
        for top, left, flip in places:
            tops = torch.full((n,), top, device=imgs.device)
            lefts = torch.full((n,), left, device=imgs.device)
            flips = torch.full((n,), flip, device=imgs.device)
            views.append(self._crop(imgs, tops, lefts, flips))
        return torch.stack(views, 1)
