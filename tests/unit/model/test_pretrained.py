"""Pretrained starts: the offline english_g2, the korean_g2 download (served on 127.0.0.1), checked loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from ocrtune.charsets import load_charset, model_info
from ocrtune.errors import UserError
from ocrtune.files import file_digest
from ocrtune.model.network import Model
from ocrtune.model.pretrained import (
    download_model,
    english_g2_path,
    load_recognizer_state,
    resolve_pretrained,
    resolve_with_fallback,
)
from ocrtune.model.surgery import build_model
from ocrtune.platform.stack import free_ports


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_english_g2_offline_md5_matches_easyocr():
    path = english_g2_path()
    assert hashlib.md5(path.read_bytes()).hexdigest() == model_info("english_g2")["md5sum"]
    assert resolve_pretrained("english_g2") == path
    state, charset = load_recognizer_state(path)
    assert charset == load_charset("english_g2")
    assert state["Prediction.weight"].shape[0] == len(charset) + 1
    assert not any(k.startswith("module.") for k in state)


def test_download_from_served_zip(served, tmp_path):
    base, md5 = served
    cache = tmp_path / "models"
    path = download_model("korean_g2", cache_dir=cache, url=f"{base}/korean_g2.zip", md5=md5)
    assert path == cache / "korean_g2.pth" and file_digest(path, "md5") == md5
    assert cache_files(cache) == ["korean_g2.pth"]  # no temp files, no zip left behind
    # cached: the URL is not needed again
    assert download_model("korean_g2", cache_dir=cache, url=f"{base}/gone.zip", md5=md5) == path


def test_download_overrides_by_environment(served, tmp_path, monkeypatch):
    base, md5 = served
    monkeypatch.setenv("OCRTUNE_MODEL_URL_KOREAN_G2", f"{base}/korean_g2.zip")
    monkeypatch.setenv("OCRTUNE_MODEL_MD5_KOREAN_G2", md5)
    monkeypatch.setenv("OCRTUNE_MODELS_DIR", str(tmp_path / "envcache"))
    path = resolve_pretrained("korean_g2")
    assert path == tmp_path / "envcache" / "korean_g2.pth"
    state, _ = load_recognizer_state(path)
    assert state["Prediction.weight"].shape[0] == 97


@pytest.mark.parametrize(
    "name, md5, match",
    [
        ("korean_g2.zip", "0" * 32, "MD5 [0-9a-f]{32} does not match expected 0{32}"),
        ("missing.zip", None, "HTTP 404"),
        ("notazip.zip", None, "not a zip archive"),
    ],
)
def test_bad_downloads_leave_nothing(served, tmp_path, name, md5, match):
    base, good = served
    cache = tmp_path / "models"
    with pytest.raises(UserError, match=match) as err:
        download_model("korean_g2", cache_dir=cache, url=f"{base}/{name}", md5=md5 or good)
    assert "\n" not in str(err.value)
    assert cache_files(cache) == []


def test_unreachable_host(tmp_path):
    (port,) = free_ports(1)  # nothing listens there
    with pytest.raises(UserError, match="download http://127.0.0.1:.* failed: .*refused"):
        download_model(
            "korean_g2", cache_dir=tmp_path, url=f"http://127.0.0.1:{port}/korean_g2.zip", timeout=5
        )
    assert cache_files(tmp_path) == []


def test_fallback_to_english_g2(served, tmp_path, monkeypatch):
    base, _ = served
    monkeypatch.setenv("OCRTUNE_MODEL_URL_KOREAN_G2", f"{base}/missing.zip")
    path, note = resolve_with_fallback("korean_g2", "english_g2", cache_dir=tmp_path)
    assert path == english_g2_path()
    assert note.startswith("korean_g2 unavailable (") and "HTTP 404" in note and "english_g2" in note
    with pytest.raises(UserError, match="HTTP 404"):
        resolve_with_fallback("korean_g2", None, cache_dir=tmp_path)
    model, report = build_model(
        "korean_g2", load_charset("korean_g2"), cache_dir=tmp_path, fallback="english_g2"
    )
    assert "HTTP 404" in report["note"] and report["kept"] > 0 and report["added"] > 0
    assert report["base"] == "english_g2"  # what the registry tags as base_model, not the name asked for
    assert model.Prediction.out_features == len(load_charset("korean_g2")) + 1


def test_module_prefix_and_checkpoint_dicts(tmp_path):
    state, charset = load_recognizer_state(english_g2_path())
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"module." + k: v for k, v in state.items()}, prefixed)
    again, _ = load_recognizer_state(prefixed)
    assert list(again) == list(state) and all(torch.equal(again[k], state[k]) for k in state)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"model": dict(state), "charset": charset, "step": 7}, ckpt)
    from_ckpt, ckpt_chars = load_recognizer_state(ckpt)
    assert ckpt_chars == charset and list(from_ckpt) == list(state)


def test_refuses_what_is_not_a_gen2_recognizer(tmp_path):
    state, _ = load_recognizer_state(english_g2_path())
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "FeatureExtraction.ConvNet.0.weight"}, missing)
    with pytest.raises(
        UserError, match=r"missing.pth: not a gen2 .*: missing FeatureExtraction.ConvNet.0.weight$"
    ):
        load_recognizer_state(missing)

    gen1_like = tmp_path / "gen1.pth"  # EasyOCR's generation-1 sizes: 512 channels
    torch.save(Model(output_channel=512, hidden_size=512, num_class=97).state_dict(), gen1_like)
    with pytest.raises(
        UserError,
        match=r"FeatureExtraction.ConvNet.0.weight has shape \(64, 1, 3, 3\), gen2 expects \(32, 1, 3, 3\)",
    ):
        load_recognizer_state(gen1_like)

    extra = tmp_path / "extra.pth"
    torch.save({**state, "Transformation.fc.weight": torch.zeros(2)}, extra)
    with pytest.raises(UserError, match="unexpected key Transformation.fc.weight"):
        load_recognizer_state(extra)

    text = tmp_path / "notes.pth"
    text.write_text("these are not weights")
    with pytest.raises(UserError, match="notes.pth: not a torch checkpoint"):
        load_recognizer_state(text)

    class Evil:
        def __reduce__(self):
            return (print, ("pickle code ran",))

    evil = tmp_path / "evil.pth"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(UserError, match="evil.pth: not a torch checkpoint"):
        load_recognizer_state(evil)

    scalars = tmp_path / "scalars.pth"
    torch.save({"lr": 0.1}, scalars)
    with pytest.raises(UserError, match="not a state dict of tensors"):
        load_recognizer_state(scalars)

    with pytest.raises(UserError, match="no such file"):
        resolve_pretrained(tmp_path / "nope.pth")
