"""The fine-tuning pipeline itself (``ocrtune.pipelines.finetune``) run through kfp.local on the real local stack.

A very small English run (english_g2 fine-tuned a few steps on words in the handwriting fonts): every
component's body runs for real in kfp.local's subprocesses. Then the summary is checked for honesty: the
registered version exists in MLflow with the export's files, and the export dir, read by plain easyocr in a
fresh process with ocrtune hidden, gives the test word accuracy the summary claims.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ocrtune.pipelines.finetune", reason="pipelines/finetune.py (H-pipe) is not written yet")

from ocrtune.platform.kfp_local import run_local
from ocrtune.release.registry import client

HERE = Path(__file__).parent
STEPS = ("generate_data", "build_lmdb", "train", "export", "evaluate", "register", "promote")

PLAIN_EASYOCR = """
import json, sys
sys.modules["ocrtune"] = None  # a user's environment: easyocr only
import easyocr
d, name, gt = sys.argv[1], sys.argv[2], sys.argv[3]
reader = easyocr.Reader(["en"], gpu=False, recog_network=name, model_storage_directory=d,
                        user_network_directory=d, download_enabled=False, detector=False, verbose=False)
root = gt.rsplit("/", 1)[0]
rows = [line.rstrip("\\n").split("\\t", 1) for line in open(gt, encoding="utf-8") if line.strip()]
hits = sum((reader.recognize(root + "/" + p) or [(0, "", 0)])[0][1] == label for p, label in rows)
print(json.dumps({"n": len(rows), "accuracy": hits / len(rows)}))
"""

PARAMS = {
    "train_count": 120,
    "val_count": 30,
    "test_count": 30,
    "steps": 12,
    "batch_size": 8,
    "lr": 0.00005,
    "model_name": "kfp-local-e2e",
    "auto_promote": True,
}


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_pipeline_through_kfp_local(stack_env, monkeypatch, tmp_path):
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("OCRTUNE_BUCKET", "ocrtune-test")
    lines: list[str] = []
    summary = run_local("tiny-en", PARAMS, tmp_path / "runs", echo=lines.append, state_dir=tmp_path / "state")

    # one line per step, in order, each with its time; kfp.local's own logging is in kfp.log, not here
    said = [next(s for s in STEPS if ln.startswith(f"[{s}] ")) for ln in lines if ln.startswith("[")]
    assert said == list(STEPS), lines
    assert not any("INFO" in ln or "Task " in ln for ln in lines), lines
    run_dir = Path(summary["run_dir"])
    assert "finished with status" in (run_dir / "kfp.log").read_text()
    assert {f"{s}.log" for s in STEPS} <= {p.name for p in (run_dir / "logs").iterdir()}
    assert any(ln.startswith("MLflow UI: http://") for ln in lines)
    assert any(ln.startswith("test ") for ln in lines)  # the metrics table

    # the summary as written, in the shape
    last = json.loads((tmp_path / "state" / "last-run.json").read_text())
    assert last == json.loads((tmp_path / "state" / "runs" / f"{summary['run_id']}.json").read_text())
    assert last == json.loads(json.dumps(summary))
    for split in ("val", "test"):
        assert set(last["metrics"][split]) == {"word_acc", "cer", "norm_ed"}
        assert set(last["metrics"]["base"][split]) == {"word_acc", "cer", "norm_ed"}
        assert last["easyocr_parity"][split]["ok"], last["easyocr_parity"]
    assert last["base_model"] == "english_g2" and last["profile"] == "tiny-en"
    assert last["model_name"] == "kfp-local-e2e" and last["recog_network"] == "custom"
    assert set(STEPS) <= set(last["timings_s"])
    assert last["promotion"]["promoted"], last["promotion"]  # the first version of the name: champion

    # honest: the version exists, from this run's training, and its export reads as the summary says
    mv = client().get_model_version(last["model_name"], last["model_version"])
    assert mv.tags["base_model"] == "english_g2"
    assert client().get_model_version_by_alias(last["model_name"], "champion").version == mv.version
    assert last["mlflow_run_id"] and client().get_run(last["mlflow_run_id"]).info.status == "FINISHED"
    (test_gt,) = (run_dir / "kfp").glob("*/generate-data/dataset/test/gt.txt")
    out = subprocess.run(
        [sys.executable, "-c", PLAIN_EASYOCR, last["export_dir"], last["recog_network"], str(test_gt)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    plain = json.loads(out.stdout.strip().splitlines()[-1])
    assert plain["n"] == PARAMS["test_count"]
    assert plain["accuracy"] == pytest.approx(last["metrics"]["test"]["word_acc"]), (plain, last["metrics"])
