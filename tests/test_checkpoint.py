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
