"""What a batch's outputs are scored by: top-1 and top-k misses (AlexNet Sec. 6),
counted on the device for training (step.py) and evaluation (evaluate.py)."""

import torch

TOP_K = 5  # Sec. 6: top-5 error, the fraction of images whose label is not among the five most probable


def count_errors(probs: torch.Tensor, labels: torch.Tensor, k: int = TOP_K) -> tuple[torch.Tensor, torch.Tensor]:
    """Numbers of top-1 and top-k misses, as device tensors."""
    top = probs.topk(min(k, probs.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return (~hit[:, 0]).sum(), (~hit.any(1)).sum()
