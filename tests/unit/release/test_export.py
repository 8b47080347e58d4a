"""Export to EasyOCR's format, proven through the real easyocr package in a process without ocrtune."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import yaml
from support.cli import run_cli
from support.english_models import EN_G2, WORDS, export_english, make_benchmark

from ocrtune.charsets import load_charset
from ocrtune.errors import UserError
from ocrtune.model.network import Model
from ocrtune.release.export import check_export, export_model
from ocrtune.release.frozen_benchmark import load_benchmark, reader_predictions

PLAIN_EASYOCR = """
import json, sys
sys.modules["ocrtune"] = None  # prove the export needs no ocrtune
import easyocr
d, images = sys.argv[1], sys.argv[2:]
reader = easyocr.Reader(["en"], gpu=False, recog_network="custom", model_storage_directory=d,
                        user_network_directory=d, download_enabled=False, detector=False, verbose=False)
print(json.dumps([reader.recognize(p)[0][1] for p in images]))
"""


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    return make_benchmark(tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def english_export(tmp_path_factory):
    return export_english(tmp_path_factory.mktemp("exp") / "custom")


def test_export_files(english_export):
    d = english_export
    assert sorted(p.name for p in d.iterdir()) == ["custom.pth", "custom.py", "custom.yaml"]
    weights = torch.load(d / "custom.pth", weights_only=True)
    assert all(k.startswith("module.") for k in weights)
    cfg = yaml.safe_load((d / "custom.yaml").read_text("utf-8"))
    assert cfg["network_params"] == {"input_channel": 1, "output_channel": 256, "hidden_size": 256}
    assert cfg["imgH"] == 64 and cfg["character_list"] == load_charset("english_g2")
    src = (d / "custom.py").read_text()
    assert "ocrtune" not in src.replace('"""', "").split("import torch")[1]


def test_hangul_stays_readable_in_yaml(tmp_path):
    ckpt = tmp_path / "k.pth"
    torch.save(Model(num_class=1009).state_dict(), ckpt)
    export_model(ckpt, tmp_path / "k", charset=load_charset("korean_g2"))
    text = (tmp_path / "k" / "custom.yaml").read_text("utf-8")
    assert "가각간" in text and "\\u" not in text


def test_plain_easyocr_reads_export_like_english_g2(english_export, bench):
    """Same weights through our export and through EasyOCR's stock english_g2: identical readings."""
    images = [str(bench / f"images/image_{i:06d}.png") for i in range(len(WORDS))]
    r = subprocess.run(
        [sys.executable, "-c", PLAIN_EASYOCR, str(english_export), *images],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    ours = json.loads(r.stdout.strip().splitlines()[-1])
    import easyocr
    from easyocr_en_models import model_dir

    stock = easyocr.Reader(
        ["en"],
        gpu=False,
        model_storage_directory=model_dir(),
        download_enabled=False,
        detector=False,
        verbose=False,
    )
    theirs = [stock.recognize(p)[0][1] for p in images]
    assert ours == theirs
    assert (
        sum(a == b for a, b in zip(ours, WORDS, strict=True)) >= len(WORDS) - 2
    )  # english_g2 reads clean text


def test_benchmark_and_reader_predictions(english_export, bench):
    b = load_benchmark(bench)
    assert len(b.samples) == len(WORDS) and len(b.sha256) == 64
    preds = reader_predictions(english_export, b)
    assert [t for t, _ in preds][:2] == ["Hello", "World"]


def test_bad_exports(english_export, tmp_path):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(english_export, d)
    (d / "custom.py").write_text("import torch\n\nclass Net(torch.nn.Module):\n    pass\n")
    with pytest.raises(UserError, match="defines no Model class"):
        check_export(d)
    shutil.copy(english_export / "custom.py", d / "custom.py")
    cfg = yaml.safe_load((d / "custom.yaml").read_text("utf-8"))
    cfg["character_list"] = cfg["character_list"][:-5]
    (d / "custom.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    with pytest.raises(
        UserError, match=r"has 91 characters \(num_class 92\) but the weights have 97 classes"
    ):
        check_export(d)
    (d / "custom.yaml").unlink()
    with pytest.raises(UserError, match="expected exactly one NAME.pth"):
        check_export(d)
    with pytest.raises(UserError, match="exists and is not empty"):
        export_model(EN_G2, english_export, charset=load_charset("english_g2"))
    with pytest.raises(UserError, match="must be a Python identifier"):
        export_model(EN_G2, tmp_path / "x", name="my-model", charset=load_charset("english_g2"))
    with pytest.raises(UserError, match=r"num_class 1009\) but the weights have 97"):
        export_model(EN_G2, tmp_path / "y", charset=load_charset("korean_g2"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a torch checkpoint"):
        export_model(tmp_path / "junk.pth", tmp_path / "z", charset="ab")
    assert not (tmp_path / "y").exists() and not (tmp_path / "z").exists()


def test_cli_export_and_ocr(tmp_path, bench):
    r = run_cli("export", str(EN_G2), "--out", str(tmp_path / "e"), "--charset", "english_g2", "--lang", "en")
    assert r.returncode == 0, r.stderr
    assert "recog_network='custom'" in r.stdout
    img = bench / "images/image_000000.png"
    r = run_cli("ocr", str(img), "--model", str(tmp_path / "e"), "--compare-with", "english_g2")
    assert r.returncode == 0, r.stderr[-1500:]
    assert r.stdout.strip().startswith("filename: 'image_000000.png', confidence: 0.")
    assert "string: 'Hello'" in r.stdout and "english_g2: confidence:" in r.stdout
    r = run_cli("ocr", str(img), "--model", str(tmp_path / "e"), "--json")
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["string"] == "Hello" and row["filename"] == "image_000000.png"
    r = run_cli("ocr", str(img), "--model", str(tmp_path / "nope"))
    assert r.returncode == 2 and "not a directory nor a models:/" in r.stderr


def test_parity_ocrtune_vs_plain_easyocr(english_export, bench):
    r = run_cli("evaluate", str(english_export), "--data", str(bench), "--json")
    assert r.returncode == 0, r.stderr[-1500:]
    report = json.loads(r.stdout)
    assert report["samples"] == len(WORDS)
    assert report["agreement"] >= 0.99 and report["accuracy_gap"] <= 0.01 and report["ok"]
    assert report["easyocr_accuracy"] >= 0.8


def test_ocr_with_craft_detector_reads_a_page(english_export, tmp_path):
    """--detector finds the words of a whole page with EasyOCR's CRAFT weights (offline package)."""
    from PIL import Image, ImageDraw, ImageFont
    from support.english_models import FONT

    page = Image.new("L", (640, 240), 255)
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), 44)
    draw.text((40, 40), "Hello", font=font, fill=0)
    draw.text((330, 140), "garden", font=font, fill=0)
    path = tmp_path / "page.png"
    page.save(path)
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    r = run_cli(
        "ocr", str(path), "--model", str(english_export), "--detector", "--json", env={"TMPDIR": str(tmp)}
    )
    assert r.returncode == 0, r.stderr[-1500:]
    strings = [json.loads(line)["string"] for line in r.stdout.strip().splitlines()]
    assert strings == ["Hello", "garden"]
    assert list(tmp.glob("ocrtune-reader-*")) == []  # the directory Reader loaded both weights from is gone


def test_ocr_on_a_broken_export_is_one_line(english_export, bench, tmp_path):
    """A character_list that does not match the weights, or a NAME.py whose Model lacks EasyOCR's signature:
    `ocrtune ocr` says which, naming both class counts, exit 2 (it was Reader's traceback, exit 1)."""
    import shutil

    image = str(bench / "images/image_000000.png")
    d = tmp_path / "m"
    shutil.copytree(english_export, d)
    cfg = yaml.safe_load((d / "custom.yaml").read_text("utf-8"))
    cfg["character_list"] = cfg["character_list"][:-5]
    (d / "custom.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    r = run_cli("ocr", image, "--model", str(d))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "92" in r.stderr and "97 classes" in r.stderr
    shutil.copy(english_export / "custom.yaml", d / "custom.yaml")
    (d / "custom.py").write_text(
        "import torch\n\nclass Model(torch.nn.Module):\n    def __init__(self, num_class):\n        super().__init__()\n"
    )
    r = run_cli("ocr", image, "--model", str(d))
    assert r.returncode == 2 and "Model does not take (input_channel, output_channel" in r.stderr, r.stderr
