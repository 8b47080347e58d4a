"""generate_data: its compiled spec, and its body for real (tiny counts): the split, the card, real crops mixed in."""

import json
from pathlib import Path

from ocrtune.components.generate_data import generate_data
from ocrtune.components.image import image
from support.english_models import make_benchmark
from support.kfp_chain import compiled, dataset, executor, interface

from ocrtune.data.gt_layout import read_gt, read_samples
from ocrtune.platform import kfp_steps
from ocrtune.release.frozen_benchmark import load_benchmark


def test_spec(tmp_path):
    spec = compiled(generate_data, tmp_path)
    container = executor(spec)
    assert container["image"] == image()
    assert "pip install" not in " ".join(container["command"])  # install_kfp_package=False: the image has kfp
    assert "kfp_steps.generate_data(" in " ".join(container["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {
        "profile": "STRING",
        "words": "STRING",
        "fonts": "STRING",
        "train_count": "NUMBER_INTEGER",
        "val_count": "NUMBER_INTEGER",
        "test_count": "NUMBER_INTEGER",
        "img_h": "NUMBER_INTEGER",
        "charset": "STRING",
        "real_data": "STRING",
        "real_ratio": "NUMBER_DOUBLE",
        "seed": "NUMBER_INTEGER",
    }
    assert arts_in == {}
    assert arts_out == {"dataset": "system.Dataset", "card": "system.HTML"}


def test_body_splits_by_held_out_typefaces_and_writes_the_card(tmp_path_factory):
    root, meta = dataset(tmp_path_factory.getbasetemp())
    card = json.loads((root / "card.json").read_text())
    assert meta["content_sha256"] == card["content_sha256"]
    assert card["counts"] == {"train": 40, "val": 10, "test": 10}
    held_out = set(card["split"]["test_fonts_held_out"])
    assert held_out and set(card["fonts"]["test"]) <= held_out
    assert not held_out & set(card["fonts"]["train"])
    html = (root.parent / "card.html").read_text()
    assert "data:image/png;base64," in html and 'src="http' not in html and "href=" not in html
    assert all(f in html for f in held_out)


def test_same_inputs_same_dataset_and_real_crops_are_mixed_in(tmp_path_factory, tmp_path):
    first, meta = dataset(tmp_path_factory.getbasetemp())
    real = make_benchmark(tmp_path / "real")  # 16 crops in the gt.txt layout, as `ocrtune data import` writes
    args = dict(profile="tiny-en", words="", fonts="", train_count=40, val_count=10, test_count=10, img_h=64)
    args.update(charset="english_g2", seed=0, real_data=str(real), real_ratio=0.2)
    mixed = kfp_steps.generate_data(
        **args, dataset_path=str(tmp_path / "d"), card_path=str(tmp_path / "c.html")
    )
    card = json.loads((tmp_path / "d" / "card.json").read_text())
    info = card["generation"]["real_data"]
    assert info["images"] == 10 and len(info["sha256"]) == 64  # 20% of 50 = 10 real beside 40 synthetic
    assert card["counts"]["train"] == 50 and card["fonts"]["train"]["real"] == 10
    assert mixed["content_sha256"] != meta["content_sha256"]
    rows = read_gt(tmp_path / "d" / "train")
    synthetic = [r for r in rows if not r[0].startswith("real/")]
    assert synthetic == read_gt(
        first / "train"
    )  # the synthetic part is the same dataset: same seed, same inputs
    assert all(
        read_samples(tmp_path / "d" / "train")[r][0] == "real" for r, _ in rows if r.startswith("real/")
    )
    assert Path(tmp_path / "c.html").read_text().count(info["sha256"][:12]) >= 1


def test_real_crops_from_an_object_storage_prefix(stack_env, store, monkeypatch, tmp_path):
    """``real_data=s3://bucket/prefix``: what a scheduled retrain points at; the crops present at that
    moment are fetched, mixed in, and their hash recorded (a new upload changes the dataset)."""
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    real = make_benchmark(tmp_path / "real")
    store.publish_tree(real, "real/batch-1")
    args = dict(profile="tiny-en", words="", fonts="", train_count=40, val_count=10, test_count=10, img_h=64)
    args.update(charset="english_g2", seed=0, real_data=f"s3://{store.bucket}/real/batch-1", real_ratio=0.2)
    kfp_steps.generate_data(**args, dataset_path=str(tmp_path / "d"), card_path=str(tmp_path / "c.html"))
    info = json.loads((tmp_path / "d" / "card.json").read_text())["generation"]["real_data"]
    assert info["images"] == 10 and info["source"] == f"s3://{store.bucket}/real/batch-1"
    assert info["sha256"] == load_benchmark(real).sha256  # the hash of the crops, wherever they came from
