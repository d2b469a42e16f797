"""AlexNet's Figure 3 (Sec. 6.1): the first layer's 96 kernels as an image
grid, tower 1's above tower 2's. The paper saw tower 1's kernels largely
colour-agnostic and tower 2's largely colour-specific."""

from .. import checkpoint as ckpts
from ..evaluate import model_from_checkpoint
from ..figures import kernel_grid


def run(ex) -> dict:
    path = ex.trained("alexnet", "alexnet")
    model = model_from_checkpoint(ckpts.load(path))
    weights = model.features.conv1.weight.detach()
    figure = kernel_grid(ex.out / "figure3.png", weights, towers=model.towers,
                         title=f"{len(weights)} conv1 kernels of {weights.shape[1]}x{weights.shape[2]}x{weights.shape[3]}")
    per_tower = len(weights) // model.towers
    return {
        "tables": [{"title": "The kernels drawn", "columns": ["checkpoint", "kernels", "towers", "kernels per tower"],
                    "rows": [[str(path), len(weights), model.towers, per_tower]]}],
        "figures": [{"file": figure.name, "caption": f"Figure 3: the {len(weights)} first-layer kernels, each scaled to "
                                                    f"its own range; tower 1 above, tower 2 below"}],
    }
