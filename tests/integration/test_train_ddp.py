"""Training as a real job: torchrun with 2 gloo ranks, SIGTERM (exit 75) and resume, MLflow on the real local
stack.

Images are words drawn with a real handwriting font (NanumPen) and written with ocrtune's own LMDB writer;
the model is the real None-VGG-BiLSTM-CTC with a small head, so a step takes about a second on 2 cores.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from support.train_data import (
    cli_env,
    config_yaml,
    tiny_cfg,
)

from ocrtune.errors import UserError
from ocrtune.training import checkpoint as ckpt
from ocrtune.training.loop import Job, run


def test_sigterm_saves_a_checkpoint_exits_75_and_resumes(data, tmp_path):
    cfg_file = config_yaml(tmp_path / "c.yaml", data, max_steps=200, checkpoint_interval=1, val_interval=1000)
    out = tmp_path / "run"
    args = [sys.executable, "-m", "ocrtune", "train", "--config", str(cfg_file), "--train", data["train"]]
    args += ["--val", data["val"], "--out", str(out), "--no-mlflow", "--no-progress"]
    proc = subprocess.Popen(args, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.pth").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert (out / "checkpoint.pth").exists(), (
            proc.stderr.read() if proc.poll() is not None else "no checkpoint"
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 75, err[-2000:]
    step = ckpt.load(out / "checkpoint.pth")["step"]
    assert 1 <= step < 200
    assert f"stopped by SIGTERM after step {step}" in err
    r = subprocess.run(
        [*args, "--resume", "--max-steps", str(step + 2)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"finished at step {step + 2}" in r.stdout
    assert f"resumed from {out / 'checkpoint.pth'} at step {step}" in (out / "log_train.txt").read_text(
        "utf-8"
    )


def test_torchrun_two_gloo_ranks_train_checkpoint_and_log(data, tmp_path, stack_env):
    # a loader worker process per rank and MLflow on rank 0, as `make run` trains: the ranks must still exit
    # (workers ignore SIGTERM, so a leaked loader iterator hung rank 0 at exit; see loader.iterate)
    cfg_file = config_yaml(
        tmp_path / "c.yaml", data, max_steps=3, val_interval=3, checkpoint_interval=3, workers=1
    )
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2"]
    cmd += ["--standalone", "-m", "ocrtune", "train"]
    cmd += ["--config", str(cfg_file), "--train", data["train"], "--val", data["val"], "--out", str(out)]
    cmd += ["--no-progress"]
    env = cli_env(MLFLOW_TRACKING_URI=stack_env["MLFLOW_TRACKING_URI"])
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    state = ckpt.load(out / "checkpoint.pth")
    assert state["step"] == 3 and len(state["rng"]) == 2 and state["sampler"]["world_size"] == 2
    # each rank drew its own augmentation/shuffle stream: the two RNG states were gathered, not copied
    text = (out / "log_train.txt").read_text("utf-8")
    assert "2 rank(s)" in text and "[3/3] Train loss: " in text and "Confidence Score & T/F" in text
    assert r.stdout.count("finished at step 3") == 1  # rank 0 alone reports


def test_mlflow_logs_params_metrics_card_plots_and_system(data, tmp_path, stack_env, monkeypatch):
    from mlflow.tracking import MlflowClient

    for key, value in stack_env.items():
        monkeypatch.setenv(key, value)
    card_dir = Path(data["train"]).parent
    (card_dir / "card.json").write_text('{"name": "tiny-test-card", "samples": 48}', "utf-8")
    cfg = tiny_cfg(data, max_steps=2, val_interval=2, checkpoint_interval=2)
    summary = run(
        cfg,
        Job(train=[data["train"]], val=data["val"], out=str(tmp_path / "ml"), mlflow=True, progress=False),
    )
    client = MlflowClient(stack_env["MLFLOW_TRACKING_URI"])
    mlrun = client.get_run(summary["mlflow_run_id"])
    assert mlrun.info.status == "FINISHED"
    assert mlrun.data.params["lr"] == "0.001" and mlrun.data.params["batch_size"] == "4"
    assert mlrun.data.params["sys.torch"] == torch.__version__ and "sys.cpu" in mlrun.data.params
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "train_loss")] == [1, 2]
    assert "accuracy" in mlrun.data.metrics and "norm_ED" in mlrun.data.metrics
    assert any(k.startswith("font_accuracy.") for k in mlrun.data.metrics)
    top = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"curves.png", "predictions.png", "log_train.txt", "dataset", "model"} <= top
    assert [a.path for a in client.list_artifacts(mlrun.info.run_id, "dataset/train")] == [
        "dataset/train/card.json"
    ]
    # a run that fails is marked FAILED, not left running
    bad = tiny_cfg(data, lr=1e30, warmup_steps=0, schedule="constant", max_bad_steps=2, max_steps=10)
    with pytest.raises(UserError, match="not finite"):
        run(
            bad,
            Job(
                train=[data["train"]], val=data["val"], out=str(tmp_path / "bad"), mlflow=True, progress=False
            ),
        )
    last = client.search_runs(
        [mlrun.info.experiment_id], order_by=["attributes.start_time DESC"], max_results=1
    )
    assert last[0].info.run_id != mlrun.info.run_id and last[0].info.status == "FAILED"
