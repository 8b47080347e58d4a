"""The fine-tuning pipeline itself (``ocrtune.pipelines.finetune``) run through kfp.local on the real local stack.

A very small English run (english_g2 fine-tuned a few steps on words in the handwriting fonts): every
component's body runs for real in kfp.local's subprocesses. Then the summary is checked for honesty: the
registered version exists in MLflow with the export's files, and the export dir, read by plain easyocr in a
fresh process with ocrtune hidden, gives the test word accuracy the summary claims.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.plain_easyocr import read_split

from ocrtune.platform.kfp_local import run_local
from ocrtune.release.registry import client

HERE = Path(__file__).parent
STEPS = ("generate_data", "build_lmdb", "train", "export", "evaluate", "register", "promote")


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
    # per kind of text, beside the base model: the line says where the fine-tune is behind, if anywhere
    assert last["per_text_class"] and all(
        set(v) == {"samples", "model", "base"} for v in last["per_text_class"].values()
    )
    assert any(ln.startswith(("behind the base model in:", "ahead of or level with")) for ln in lines)
    assert last["promotion"]["promoted"], last["promotion"]  # the first version of the name: champion

    # honest: the version exists, from this run's training, and its export reads as the summary says
    mv = client().get_model_version(last["model_name"], last["model_version"])
    assert mv.tags["base_model"] == "english_g2"
    assert client().get_model_version_by_alias(last["model_name"], "champion").version == mv.version
    assert last["mlflow_run_id"] and client().get_run(last["mlflow_run_id"]).info.status == "FINISHED"
    # the evaluate step's error report sits in the training's run, beside its curves
    logged = {a.path for a in client().list_artifacts(last["mlflow_run_id"], "error_report")}
    assert {f"error_report/{f}" for f in ("report.json", "report.md", "report.html")} <= logged, logged
    (test_gt,) = (run_dir / "kfp").glob("*/generate-data/dataset/test/gt.txt")
    plain = read_split(last["export_dir"], str(test_gt), last["recog_network"])
    assert plain["n"] == PARAMS["test_count"]
    assert plain["accuracy"] == pytest.approx(last["metrics"]["test"]["word_acc"]), (plain, last["metrics"])
