"""NIN on CIFAR-10 with augmentation (Lin et al. 2014, Table 2: 8.81%)."""

from ..figures import curves
from .compare import comparison


def run(ex) -> dict:
    r = ex.train("nin-cifar", "nin-cifar")
    c, paper = r["curve"], ex.published["test_error"]
    figure = curves(ex.out / "nin-cifar.png", [{
        "title": "NIN, CIFAR-10", "xlabel": "iteration", "ylabel": "error (%)", "hline": paper, "series": [
            {"label": "training error", "x": c["step"], "y": c["train_error"], "style": "dashed"},
            {"label": "test error", "x": c["step"], "y": c["val_top1_error"], "style": "solid"}]}])
    f = r["final"]
    return {
        "tables": [{"title": "CIFAR-10 error (%)", "columns": ["network", "training error", "test error", "paper"],
                    "rows": [["NIN + dropout + augmentation", f["train_error"], f["val_top1_error"], paper]]}],
        "figures": [{"file": figure.name, "caption": f"Training (dashed) and test (solid) error; the dotted line is the "
                                                    f"paper's {paper}%"}],
        "comparisons": [comparison("NIN test error", f["val_top1_error"], paper, ex.published["source"])],
    }
