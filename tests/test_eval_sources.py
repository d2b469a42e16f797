"""`ilsvrc eval` takes its batches where training does (issue 15, item 3):
decoded once onto the device, or from loader workers, the same errors."""

import pytest

from ilsvrc import evaluate, train


pytestmark = pytest.mark.usefixtures("narrow_module")  # AlexNet's fc6 and fc7 narrow (conftest.narrow_heads)


@pytest.fixture(scope="module")
def run(tiny_data, tmp_path_factory, narrow_module):
    out = tmp_path_factory.mktemp("eval-sources") / "run"
    train("alexnet", tiny_data, out, max_steps=2, image_size=64, batch_size=8, device="cpu", workers=0, progress=False)
    return out


@pytest.mark.parametrize("views", ["centre", "ten-crop"])
def test_resident_batches_give_the_workers_errors(run, views):
    common = dict(views=views, device="cpu", workers=0, progress=False)
    resident = evaluate(run, None, data_loader="resident", **common)
    workers = evaluate(run, None, data_loader="workers", **common)
    assert resident["images"] == workers["images"] == 12
    for key in ("top1_error", "top5_error"):
        assert resident[key] == pytest.approx(workers[key], abs=1e-9), key
