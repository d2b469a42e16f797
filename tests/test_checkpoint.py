"""A checkpoint that does not fit its model says what does not fit, in one line."""

import pytest

from ilsvrc import UserError, recipes
from ilsvrc.checkpoint import mismatch
from ilsvrc.evaluate import model_from_checkpoint
from ilsvrc.models import build


def test_a_mismatched_checkpoint_names_the_entry_that_does_not_fit():
    model = build("resnet-20", 10, 32)
    state = model.state_dict()
    state.pop("fc.bias")
    ckpt = {"config": recipes.resolve("resnet-cifar").to_dict(), "classes": [str(i) for i in range(10)], "model": state}
    with pytest.raises(UserError) as e:
        model_from_checkpoint(ckpt)
    assert str(e.value) == 'checkpoint does not match the resnet-20 it names: Missing key(s) in state_dict: "fc.bias".'


def test_mismatch_keeps_one_line_and_a_bounded_length():
    error = RuntimeError("Error(s) in loading state_dict for ResNet:\n\tsize mismatch for w: " + "x" * 1000 + "\n\tmore")
    text = mismatch(error, most=50)
    assert "\n" not in text and len(text) == 50 and text.startswith("size mismatch for w") and text.endswith("...")
    assert mismatch(RuntimeError("one line")) == "one line"


def test_a_tensor_that_views_a_larger_one_is_saved_as_itself(tmp_path):
    """Runs trained stacked hold their weights as rows of the stack's tensors
    (stacked.py); torch.save alone would write every run's rows into each file."""
    import torch

    from ilsvrc.checkpoint import atomic_save

    model = build("resnet-20", 10, 32)
    alone = tmp_path / "alone.pt"
    atomic_save({"model": model.state_dict()}, alone)
    stack = {k: torch.stack([v] * 8) for k, v in model.state_dict().items()}  # eight runs' rows
    rows = model.state_dict()
    for k, v in rows.items():
        v.data = stack[k][3]
    viewed = tmp_path / "viewed.pt"
    atomic_save({"model": rows, "optimizer": {"state": {0: {"momentum_buffer": stack["fc.weight"][3]}}}}, viewed)
    assert viewed.stat().st_size < 1.1 * alone.stat().st_size  # not eight times its size
    saved = torch.load(viewed, weights_only=True)
    for k, v in saved["model"].items():
        assert torch.equal(v, stack[k][3]) and v.untyped_storage().nbytes() == v.numel() * v.element_size(), k
    assert hasattr(saved["model"], "_metadata")  # the modules' versions, which load_state_dict reads
    model.load_state_dict(saved["model"])
