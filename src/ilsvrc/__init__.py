"""ilsvrc: the ConvNets that won the ImageNet challenge, as their papers describe them.

The Python API (the ``ilsvrc`` command is a thin layer over it)::

    from ilsvrc import build, train, evaluate, predict
    model = build("alexnet", num_classes=10)
    train("alexnet", data="imagenette", out="runs/a", epochs=1)
    evaluate("runs/a/last.pt", "imagenette", ten_crop=True)
    predict("runs/a/best.pt", ["photo.jpg"])
    train("resnet-cifar", data="cifar10-32", out="runs/r110", model="resnet-110")
    from ilsvrc.export import export; export("runs/r110", "r110.pt")
"""

__version__ = "0.1.0"

from .errors import UserError  # noqa: E402
from .evaluate import evaluate  # noqa: E402
from .models import build  # noqa: E402
from .predict import predict  # noqa: E402
from .train import train  # noqa: E402

__all__ = ["UserError", "build", "evaluate", "predict", "train", "__version__"]
