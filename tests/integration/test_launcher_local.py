"""The launcher's local backend: torchrun with 2 CPU ranks (gloo) on this machine, as the pipeline's train step
runs it under ``make run``; its output streamed, a failure reported with the ranks' last lines."""

from __future__ import annotations

from support.train_data import config_yaml

from ocrtune.platform.launcher import TrainSpec, launch


def test_local_backend_trains_with_two_gloo_ranks(data, tmp_path, monkeypatch):
    monkeypatch.setenv("OCRTUNE_THREADS", "1")
    cfg = config_yaml(tmp_path / "c.yaml", data, max_steps=2, val_interval=2, checkpoint_interval=2)
    out = tmp_path / "train"
    args = ["--config", str(cfg), "--train", data["train"], "--val", data["val"], "--out", str(out)]
    lines = []
    r = launch(
        TrainSpec(backend="local", train_args=[*args, "--no-mlflow", "--no-progress"], nproc_per_node=2),
        echo=lines.append,
    )
    assert r.status == "succeeded" and r.exit_code == 0, r.logs_tail
    assert lines[0] == "local: torchrun with 2 rank(s)"
    assert any(line.startswith("finished at step 2") for line in lines)
    assert "2 rank(s)" in (out / "log_train.txt").read_text("utf-8")

    bad = launch(
        TrainSpec(
            backend="local",
            train_args=[*args[:-2], "--out", str(tmp_path / "b"), "--val", str(tmp_path / "missing")],
        ),
        echo=lambda line: None,
    )
    assert bad.status == "failed" and bad.exit_code != 0
    assert "missing" in bad.logs_tail
