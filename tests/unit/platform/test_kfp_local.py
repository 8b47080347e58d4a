"""kfp_local's pipeline arguments (the profile's values for what the pipeline declares, --param over them)
and its end-of-run report; the whole run is tests/integration/test_pipeline_kfp_local.py."""

from __future__ import annotations

import pytest

pytest.importorskip("ocrtune.pipelines.finetune", reason="pipelines/finetune.py (H-pipe) is not written yet")

from ocrtune.errors import UserError
from ocrtune.platform import kfp_local


def test_the_profile_fills_the_pipeline_parameters_and_params_override():
    args = kfp_local.arguments("tiny-en", {"steps": "12", "lr": "0.0002"}, "run-7")
    declared = kfp_local.declared()
    assert set(args) <= set(declared)
    assert (
        args["profile"] == "tiny-en"
        and args["charset"] == "english_g2"
        and args["base_model"] == "english_g2"
    )
    assert args["steps"] == 12 and args["lr"] == 0.0002  # --param strings, typed as the pipeline declares
    if "pipeline_run_id" in declared:
        assert args["pipeline_run_id"] == "run-7"
    korean = kfp_local.arguments("tiny", {}, "run-8")
    assert korean["charset"] == "korean_g2" and korean["model_name"] == "ocrtune-korean"


def test_bad_params_are_one_line():
    with pytest.raises(UserError, match="unknown pipeline parameter 'stepz'"):
        kfp_local.arguments("tiny", {"stepz": 3}, "r")
    with pytest.raises(UserError, match="--param steps='many': must be integer"):
        kfp_local.arguments("tiny", {"steps": "many"}, "r")
    with pytest.raises(UserError):
        kfp_local.arguments("no-such-profile", {}, "r")
    assert kfp_local.coerce("auto_promote", "false", "BOOLEAN") is False
    with pytest.raises(UserError, match="must be boolean"):
        kfp_local.coerce("auto_promote", "maybe", "BOOLEAN")


def test_report_lines_show_the_scores_beside_the_base():
    fig = {"word_acc": 0.5, "cer": 0.2, "norm_ed": 0.8}
    base = {"word_acc": 0.25, "cer": 0.4, "norm_ed": 0.6}
    summary = {
        "mlflow_url": "http://127.0.0.1:5000",
        "model_name": "m",
        "model_version": "3",
        "recog_network": "custom",
        "export_dir": "/x/model",
        "base_model": "english_g2",
        "metrics": {"val": fig, "test": fig, "base": {"val": base, "test": base}},
        "easyocr_parity": {"val": {"agreement": 1.0, "ok": True}, "test": {"agreement": 0.98, "ok": False}},
    }
    lines = kfp_local.report_lines(summary)
    assert lines[:2] == ["MLflow UI: http://127.0.0.1:5000", "registered: models:/m/3"]
    test = next(ln for ln in lines if ln.startswith("test "))
    assert test.split()[1:4] == ["0.5000", "0.2000", "0.8000"] and test.split()[-1] == "+0.2500"
    parity = next(ln for ln in lines if ln.startswith("Reader parity"))
    assert "test 0.9800 FAILED" in parity
    assert not any("kind of text" in ln for ln in lines)  # no per-kind figures, no claim about them
    summary["per_text_class"] = {
        "lower": {"samples": 9, "model": 0.6, "base": 0.5},
        "UPPER": {"samples": 3, "model": 0.3, "base": 0.4},
    }
    summary["behind_base"] = ["UPPER"]
    lines = kfp_local.report_lines(summary)
    assert "test per kind of text (fine-tuned / base): lower 0.60/0.50 (n=9), UPPER 0.30/0.40 (n=3)" in lines
    assert "behind the base model in: UPPER" in lines
