"""Our recognizer and EasyOCR's own class hold the same weights and compute the same logits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ocrtune.model.network import Model

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
    for width in (64, 192):
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


# ---- decoding: our greedy decode and confidence against EasyOCR's recognizer_predict ----------------------

recognition = pytest.importorskip("easyocr.recognition")
easyocr_utils = pytest.importorskip("easyocr.utils")


class Logits(torch.nn.Module):
    """Feeds ready-made logits through EasyOCR's recognizer_predict (its 'model' returns its input)."""

    def forward(self, x, text=None):
        return x


def easyocr_decode(logits: torch.Tensor, charset: str, ignore_idx: list[int]) -> list[tuple[str, float]]:
    converter = easyocr_utils.CTCLabelConverter(charset, {}, {})
    res = recognition.recognizer_predict(Logits(), converter, [logits], 20, ignore_idx, {}, "greedy")
    return [(text, float(conf)) for text, conf in res]


def test_decode_identical_to_easyocr_on_crafted_logits():
    from ocrtune.model.decode import decode_greedy, ignore_indices

    charset = "abcdefghij가나다"
    g = torch.Generator().manual_seed(0)
    logits = torch.randn((6, 30, len(charset) + 1), generator=g) * 3
    logits[1, :, 0] += 20  # all blank: empty text, confidence 0
    logits[2, 5:15, 3] += 30  # a long run of one class: collapses to one character
    logits[3, :, 4] += 30  # every column the same class
    for ignore in ("", "c가"):
        ours = decode_greedy(logits, charset, ignore)
        theirs = easyocr_decode(logits, charset, ignore_indices(charset, ignore))
        assert ours == theirs
    assert ours[1] == ("", 0.0)
    assert len(ours[3][0]) == 1


@pytest.fixture(scope="module")
def english_g2():
    from ocrtune.model.pretrained import load_recognizer_state, resolve_pretrained

    state, charset = load_recognizer_state(resolve_pretrained("english_g2"))
    model = Model(num_class=len(charset) + 1)
    model.load_state_dict(state, strict=True)
    return model.eval(), charset


def english_crops(tmp_path):
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 28)
    words = ["hello", "Kubeflow", "pipeline", "2024", "ocrtune!", "a", "Seoul", "tokens 42"]
    paths = []
    for i, word in enumerate(words):
        left, t, r, b = font.getbbox(word)
        img = Image.new("L", (r - left + 16, b - t + 14), 235)
        ImageDraw.Draw(img).text((8 - left, 7 - t), word, font=font, fill=20)
        paths.append(tmp_path / f"w{i}.png")
        img.save(paths[-1])
    # noisy low-contrast crops: confidence under 0.1, so Reader's contrast retry decides the reading
    bold = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 34)
    rng = np.random.default_rng(0)
    for bg in (90, 140, 200):
        img = Image.new("L", (130, 40), bg)
        ImageDraw.Draw(img).text((3, 0), "MW", font=bold, fill=bg - 20)
        noisy = np.asarray(img).astype(float) + rng.normal(0, 10, (40, 130))
        paths.append(tmp_path / f"faint{bg}.png")
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "L").save(paths[-1])
    return words, paths


def test_read_crops_identical_to_reader(english_g2, tmp_path):
    """The whole chain (preprocess, model, decode, contrast retry) against easyocr.Reader.recognize."""
    import easyocr
    import easyocr_en_models

    from ocrtune.model.decode import read_crops

    model, charset = english_g2
    words, paths = english_crops(tmp_path)
    reader = easyocr.Reader(
        ["en"],
        gpu=False,
        model_storage_directory=easyocr_en_models.model_dir(),
        download_enabled=False,
        detector=False,
        quantize=False,
        verbose=False,
    )
    assert reader.character == charset
    ours = read_crops(model, paths, charset, batch_size=3)
    assert ours != read_crops(model, paths, charset, contrast_ths=0.0), "no crop took the contrast retry"
    for path, (text, conf) in zip(paths, ours, strict=True):
        ((_, r_text, r_conf),) = reader.recognize(str(path))
        assert text == r_text, path
        assert conf == pytest.approx(float(r_conf), abs=1e-5), path
    assert sum(text == word for (text, _), word in zip(ours, words, strict=False)) >= len(words) - 2
