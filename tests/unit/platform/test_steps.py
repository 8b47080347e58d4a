"""The pipeline's steps declared once: the table is complete and its data flow closed, training starts
through torchrun_command, and a KFP step's artifacts stand in for the run directory's names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocrtune.config import load_config
from ocrtune.errors import UserError
from ocrtune.platform import stack, steps
from ocrtune.platform.steps import STEPS, StepContext, register_tags, registered_line
from ocrtune.training.distributed import torchrun_command

EIGHT = ("fonts", "generate", "lmdb", "train", "export", "evaluate", "register", "promote")
# written by the component itself, not by a step: the run's config, and promote's frozen benchmark
RUNNER_WRITES = {steps.CONFIG_FILE, steps.BENCHMARK_DIR}


@pytest.fixture(scope="module")
def cfg():
    return load_config("tiny")


def _covered(rel: str, paths) -> bool:
    """``rel`` is one of ``paths`` or inside one of them."""
    return any(rel == p or rel.startswith(p.rstrip("/") + "/") for p in paths)


def test_the_table_is_the_eight_steps_in_order():
    assert tuple(s.name for s in STEPS) == EIGHT == steps.NAMES
    assert steps.step("train").distributed and not any(s.distributed for s in STEPS if s.name != "train")
    with pytest.raises(KeyError, match="no pipeline step 'deploy'"):
        steps.step("deploy")


def test_every_input_is_an_earlier_output():
    written = set(RUNNER_WRITES)
    for s in STEPS:
        for rel in s.inputs:
            assert _covered(rel, written), f"{s.name} reads {rel}, which no earlier step writes"
        written.update(s.outputs)
    assert steps.TRAIN_RESULT_FILE in steps.step("train").outputs
    assert steps.TRAIN_RESULT_FILE in steps.step("register").inputs
    assert [s.name for s in STEPS if s.args is None] == ["evaluate"]  # scored in its component's process
    with pytest.raises(KeyError, match="'evaluate' runs no command"):
        steps.step("evaluate").command(StepContext(Path("/r"), load_config("tiny")))


def test_torchrun_argv_comes_from_torchrun_command(cfg, tmp_path):
    train = steps.step("train")
    ctx = StepContext(tmp_path, cfg, nproc=2, python="/py")
    args = train.args(ctx)
    assert args[0] == "train" and "--resume" in args
    assert train.command(ctx) == torchrun_command(args[1:], nproc_per_node=2, env={}, python="/py")
    assert train.command(ctx)[:3] == [
        "/py",
        "-m",
        "torch.distributed.run",
    ] and "--standalone" in train.command(ctx)
    # in a TrainJob torchrun reads PET_* itself: the same function, the same table
    job = StepContext(
        tmp_path, cfg, nproc=2, python="/py", env={"PET_NNODES": "2", "PET_NPROC_PER_NODE": "4"}
    )
    assert "--standalone" not in train.command(job) and "--nproc_per_node" not in train.command(job)
    assert train.command(StepContext(tmp_path, cfg, nproc=1, python="/py")) == ["/py", "-m", "ocrtune", *args]
    assert steps.step("export").command(ctx)[:4] == ["/py", "-m", "ocrtune", "export"]


def _write_inputs(d: Path, base_model: str | None = "english_g2") -> None:
    (d / "data").mkdir(parents=True)
    (d / "data/card.json").write_text(json.dumps({"content_sha256": "c" * 64}))
    (d / "parity.json").write_text(
        json.dumps({"ocrtune_accuracy": 0.5, "easyocr_accuracy": 0.5, "agreement": 1})
    )
    if base_model is not None:
        (d / "train").mkdir()
        (d / "train/train_result.json").write_text(
            json.dumps({"base_model": base_model, "status": "finished"})
        )


def test_register_reads_base_model_from_train_result_json(cfg, tmp_path):
    d = tmp_path / "tiny-12345678"
    _write_inputs(d)
    tags = register_tags(StepContext(d, cfg))  # no checkpoint exists: only the declared inputs are read
    assert tags["base_model"] == "english_g2" and tags["pipeline_run_id"] == "tiny-12345678"
    assert tags["dataset_sha256"] == "c" * 64 and tags["parity_agreement"] == "1.0000"
    args = steps.step("register").args(StepContext(d, cfg, run_id="kfp-run"))
    assert "base_model=english_g2" in args and "pipeline_run_id=kfp-run" in args


def test_a_missing_train_result_names_the_train_step(cfg, tmp_path):
    _write_inputs(tmp_path, base_model=None)
    with pytest.raises(UserError) as exc:
        register_tags(StepContext(tmp_path, cfg))
    assert (
        str(exc.value)
        == f"{tmp_path / 'train/train_result.json'} is missing: the train step did not write it"
    )


def test_the_registered_line_is_read_from_stdout():
    out = "noise\nregistered: models:/m/3 (aliases: challenger)\n"
    assert registered_line(out) == "registered: models:/m/3 (aliases: challenger)\n"
    with pytest.raises(UserError, match="register printed no"):
        registered_line("nothing")


def test_stack_env_for_run_obeys_env_only(monkeypatch, tmp_path):
    monkeypatch.setenv("OCRTUNE_ENDPOINTS", "env-only")
    with pytest.raises(UserError, match="^MLFLOW_TRACKING_URI is not set, and OCRTUNE_ENDPOINTS=env-only"):
        stack.stack_env_for_run(tmp_path)
    monkeypatch.delenv("OCRTUNE_ENDPOINTS")
    with pytest.raises(UserError, match="is not running: ocrtune stack up"):
        stack.stack_env_for_run(tmp_path)


def test_paths_map_top_level_names_to_artifacts(cfg, tmp_path):
    """A KFP step's context: "data", "lmdb", "train", "export" live at its artifacts' paths, the rest in run_dir."""
    art = tmp_path / "kfp"
    paths = {"data": art / "dataset", "lmdb": art / "lmdb", "train": art / "ckpt", "export": art / "model"}
    ctx = StepContext(tmp_path / "work", cfg, paths=paths)
    assert ctx.path("lmdb") == art / "lmdb" and ctx.path("lmdb/val") == art / "lmdb/val"
    assert ctx.path(steps.CARD_FILE) == art / "dataset/card.json"
    assert ctx.path("export/{export}.pth") == art / f"model/{cfg.export.name}.pth"
    assert ctx.path(steps.CONFIG_FILE) == tmp_path / "work/config.yaml"
    assert ctx.path("lmdbx") == tmp_path / "work/lmdbx"  # a name, not a prefix
    args = steps.step("train").args(ctx)
    assert args[args.index("--train") + 1] == str(art / "lmdb/train")
    assert args[args.index("--out") + 1] == str(art / "ckpt")
    exact = StepContext(tmp_path / "work", cfg, paths={steps.PARITY_FILE: tmp_path / "p.json"})
    assert exact.path(steps.PARITY_FILE) == tmp_path / "p.json"
