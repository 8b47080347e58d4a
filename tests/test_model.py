"""Our recognizer and EasyOCR's own class hold the same weights and compute the same logits."""

from __future__ import annotations

import pytest
import torch

from ocrtune.model import Model

vgg_model = pytest.importorskip("easyocr.model.vgg_model")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere, BatchNorm running stats included, so a wrong wiring shows."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if t.dtype.is_floating_point:
                offset = 1.0 if name.endswith("running_var") else 0.0  # variances must stay positive
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 - 0.1 + offset)


def batch(seed: int, width: int = 200) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((3, 1, 64, width), generator=g) * 2 - 1


@pytest.mark.parametrize("num_class", [1009, 97])
def test_state_dict_keys_and_shapes_match_easyocr(num_class):
    ours, theirs = (
        Model(num_class=num_class).state_dict(),
        vgg_model.Model(1, 256, 256, num_class).state_dict(),
    )
    assert list(ours) == list(theirs)
    for key in ours:
        assert ours[key].shape == theirs[key].shape, key


def test_ours_into_easyocr_same_logits():
    ours = Model(num_class=97)
    randomize(ours, 1)
    theirs = vgg_model.Model(1, 256, 256, 97)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    x = batch(2)
    with torch.no_grad():
        a, b = ours(x), theirs(x, None)
    assert a.shape == (3, 200 // 4 - 1, 97)
    assert torch.allclose(a, b, atol=1e-6, rtol=0)


def test_easyocr_into_ours_same_logits():
    theirs = vgg_model.Model(1, 256, 256, 1009)
    randomize(theirs, 3)
    ours = Model()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    ours.eval(), theirs.eval()
    for width in (64, 128, 448):
        x = batch(4, width)
        with torch.no_grad():
            assert torch.allclose(ours(x), theirs(x, None), atol=1e-6, rtol=0)


def test_trains_in_train_mode():
    """Gradients reach every parameter (nothing detached by accident) and BatchNorm updates its stats."""
    model = Model(num_class=11)
    model.train()
    out = model(batch(5, 96))
    out.log_softmax(2).mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
    assert model.FeatureExtraction.ConvNet[12].num_batches_tracked.item() == 1
