"""The pipeline from the command line (`ocrtune run --config FILE`, kfp.local), then what a user does with it.

A config file (not a profile) asks for korean_g2, which cannot be fetched (a refused port), so english_g2
takes over, fine-tuned on English words in our handwriting fonts for a few DDP steps (2 gloo ranks):
exported, scored, registered and promoted against the real local stack. Then the champion is pulled by
alias and the test split read in a fresh process with plain easyocr, and read by alias from the registry.
"""

from __future__ import annotations

import json
from pathlib import Path

import wordfreq
import yaml
from support.cli import run_cli
from support.plain_easyocr import read_split

from ocrtune.platform.stack import free_ports

HERE = Path(__file__).parent


def test_local_pipeline_end_to_end(stack_env, tmp_path):
    words = [w for w in wordfreq.top_n_list("en", 3000) if w.isascii() and w.isalpha() and len(w) > 2][:1500]
    (tmp_path / "words.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    cfg = yaml.safe_load((HERE.parent / "fixtures" / "e2e-english.yaml").read_text())
    cfg["data"]["words"] = str(tmp_path / "words.txt")
    # as the tiny profile offline: korean_g2 cannot be fetched (a refused port), english_g2 takes over
    cfg["train"].update(pretrained="korean_g2", fallback_pretrained="english_g2")
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(cfg))
    (port,) = free_ports(1)
    env = {
        **stack_env,
        "OCRTUNE_BUCKET": "ocrtune-test",
        "OCRTUNE_MODEL_URL_KOREAN_G2": f"http://127.0.0.1:{port}/korean_g2.zip",
    }
    r = run_cli(
        "run",
        "--config",
        str(tmp_path / "run.yaml"),
        "--runs-dir",
        str(tmp_path / "runs"),
        "--param",
        "gpus_per_node=2",  # local backend: torchrun with 2 CPU ranks
        "--param",
        "model_name=e2e-english",
        env={**env, "OCRTUNE_STACK_DIR": str(tmp_path / "state")},
        timeout=900,
    )
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    last = json.loads((tmp_path / "state" / "last-run.json").read_text())
    assert last["base_model"] == "english_g2"  # the weights it started from, not the name asked for
    assert last["promotion"]["promoted"] and last["model_name"] == "e2e-english"
    run_dir = Path(last["run_dir"])
    log = (run_dir / "logs" / "train.log").read_text()
    assert "ocrtune train: 2 rank(s), device cpu" in log, log[:2000]
    (test_gt,) = (run_dir / "kfp").glob("*/generate-data/dataset/test/gt.txt")

    # what a user does: pull the champion by alias, read the test split with plain easyocr
    pulled = tmp_path / "pulled"
    r = run_cli("pull", "models:/e2e-english@champion", "--to", str(pulled), env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    plain = read_split(str(pulled), str(test_gt))
    assert plain["n"] == len(test_gt.read_text("utf-8").splitlines())
    assert abs(plain["accuracy"] - last["metrics"]["test"]["word_acc"]) <= 0.01, (plain, last["metrics"])

    # read by alias straight from the registry, beside the pulled copy: the same model, the same reading
    rel = test_gt.read_text("utf-8").splitlines()[0].split("\t", 1)[0]
    r = run_cli(
        "ocr",
        str(test_gt.parent / rel),
        "--model",
        "models:/e2e-english@champion",
        "--compare-with",
        str(pulled),
        "--json",
        env=env,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    row = json.loads(r.stdout.strip().splitlines()[-1])
    assert row["string"] == row["compare"]["string"] and row["confidence"] == row["compare"]["confidence"]
