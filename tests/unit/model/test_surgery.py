"""Head surgery on the real english_g2 weights: rows carried over, new rows added, readings preserved."""

from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from ocrtune.charsets import is_hangul, load_charset
from ocrtune.errors import UserError
from ocrtune.model.decode import read_crops
from ocrtune.model.network import Model
from ocrtune.model.pretrained import load_recognizer_state, resolve_pretrained
from ocrtune.model.surgery import adapt_head, build_model, freeze

WORDS = ["hello", "Kubeflow", "pipeline", "2024", "Seoul", "tokens 42", "OCR", "batch=64"]


def ksx1001_syllables() -> str:
    """KS X 1001's 2,350 Hangul syllables: those EUC-KR encodes in two bytes (not as 8-byte make-up)."""
    return "".join(c for c in map(chr, range(0xAC00, 0xD7A4)) if len(c.encode("euc-kr")) == 2)


@pytest.fixture(scope="module")
def english():
    return load_recognizer_state(resolve_pretrained("english_g2"))


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    root = tmp_path_factory.mktemp("words")
    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", 30)
    paths = []
    for i, word in enumerate(WORDS):
        left, top, right, bottom = font.getbbox(word)
        img = Image.new("L", (right - left + 16, bottom - top + 14), 240)
        ImageDraw.Draw(img).text((8 - left, 7 - top), word, font=font, fill=15)
        paths.append(root / f"{i}.png")
        img.save(paths[-1])
    return paths


def test_english_to_korean_keeps_shared_rows(english):
    state, old = english
    new = load_charset("korean_g2")
    adapted, report = adapt_head(state, old, new)
    shared = [c for c in new if c in set(old)]
    assert report["kept"] == len(shared) and report["added"] == len(new) - len(shared)
    assert report["dropped"] == len(set(old) - set(new))
    assert len(shared) == sum(ord(c) < 128 for c in new)  # every ASCII row of korean_g2 carries over
    assert report["added"] == sum(is_hangul(c) for c in new)
    w_old, w_new = state["Prediction.weight"], adapted["Prediction.weight"]
    assert w_new.shape == (len(new) + 1, w_old.shape[1])
    assert torch.equal(w_new[0], w_old[0]) and torch.equal(
        adapted["Prediction.bias"][0], state["Prediction.bias"][0]
    )
    for ch in shared:
        assert torch.equal(w_new[new.index(ch) + 1], w_old[old.index(ch) + 1]), ch
    for key in state:  # everything but the head is untouched
        if not key.startswith("Prediction."):
            assert adapted[key] is state[key]
    assert "kept the blank and" in report["message"] and str(report["added"]) in report["message"]
    again, _ = adapt_head(state, old, new)
    assert torch.equal(again["Prediction.weight"], w_new)  # deterministic for a seed


def test_adapted_model_still_reads_english(english, crops):
    """New Hangul rows must not steal the argmax from the trained ones: readings match english_g2's."""
    state, old = english
    base = Model(num_class=len(old) + 1)
    base.load_state_dict(state)
    korean = load_charset("korean_g2")
    model, report = build_model("english_g2", korean)
    assert report["added"] > 0
    before = read_crops(base, crops, old)
    after = read_crops(model, crops, korean)
    same = sum(a[0] == b[0] for a, b in zip(before, after, strict=True))
    assert same >= len(crops) - 1, (before, after)
    assert sum(text == word for (text, _), word in zip(after, WORDS, strict=True)) >= len(WORDS) - 2


def test_korean_g2_extended_to_ksx1001(english, tmp_path):
    """korean_g2 -> korean_g2 + every KS X 1001 syllable: all 1,008 rows stay, only the missing are added."""
    korean = load_charset("korean_g2")
    kg2_state, _ = adapt_head(english[0], english[1], korean)  # a korean_g2-shaped head with distinct rows
    ks = ksx1001_syllables()
    assert len(ks) == 2350
    extended = korean + "".join(c for c in ks if c not in set(korean))
    out, report = adapt_head(kg2_state, korean, extended)
    assert report["kept"] == len(korean)
    assert report["added"] == len(ks) - sum(c in set(ks) for c in korean)
    assert report["dropped"] == 0
    assert torch.equal(out["Prediction.weight"][: len(korean) + 1], kg2_state["Prediction.weight"])
    # the file route: a .pth with a yaml beside it names its charset, build_model finds it
    pth = tmp_path / "mine.pth"
    torch.save({"module." + k: v for k, v in kg2_state.items()}, pth)
    import yaml

    (tmp_path / "mine.yaml").write_text(
        yaml.safe_dump({"character_list": korean}, allow_unicode=True), "utf-8"
    )
    model, report2 = build_model(pth, extended)
    assert report2["kept"] == len(korean) and model.Prediction.out_features == len(extended) + 1


def test_reordered_and_shrunk_charset(english):
    state, old = english
    new = "".join(reversed("0123456789abc")) + "한"
    out, report = adapt_head(state, old, new)
    assert report["kept"] == 13 and report["added"] == 1 and report["dropped"] == len(old) - 13
    assert torch.equal(out["Prediction.weight"][1], state["Prediction.weight"][old.index("c") + 1])


def test_fresh_head(english):
    state, old = english
    out, report = adapt_head(state, old, "가나다", fresh=True)
    assert report["mode"] == "fresh" and report["kept"] == 0 and report["blank"] == "new"
    assert out["Prediction.weight"].shape == (4, 256)
    assert not torch.equal(out["Prediction.weight"][0], state["Prediction.weight"][0])
    model, rep = build_model("english_g2", "가나다", fresh_head=True)
    assert rep["mode"] == "fresh" and model.Prediction.out_features == 4


def test_mistakes_are_one_line_errors(english, tmp_path):
    state, old = english
    with pytest.raises(UserError, match="97 rows|96 \\+ 1"):
        adapt_head(state, old[:-1], "abc")
    with pytest.raises(UserError, match="repeats the character 'a'"):
        adapt_head(state, old, "aba")
    bare = tmp_path / "bare.pth"
    torch.save(state, bare)  # no charset anywhere, 97 classes
    with pytest.raises(UserError, match="charset is unknown.*97 classes do not fit the 4"):
        build_model(bare, "가나다")
    model, report = build_model(bare, old)  # same size: assumed, and said
    assert "assumed" in report["note"]


def test_scratch_model():
    model, report = build_model(None, "abc")
    assert report["mode"] == "scratch" and model.Prediction.out_features == 4


def test_freeze_keeps_trunk_exact(english):
    model, _ = build_model("english_g2", load_charset("english_g2"))
    counts = freeze(model, feature_extractor=True)
    assert counts["frozen"] == sum(p.numel() for p in model.FeatureExtraction.parameters())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    x = torch.rand(4, 1, 64, 128) * 2 - 1
    model(x).log_softmax(2).mean().backward()
    opt.step()
    after = model.state_dict()
    for key in before:
        changed = not torch.equal(before[key], after[key])
        if key.startswith("FeatureExtraction."):
            assert not changed, key  # weights and BatchNorm statistics alike
        elif key.startswith(("Prediction.", "SequenceModeling.")) and key.endswith("weight"):
            assert changed, key
    freeze(model, sequence_model=True)
    assert all(not p.requires_grad for p in model.SequenceModeling.parameters())
    assert all(p.requires_grad for p in model.Prediction.parameters())
