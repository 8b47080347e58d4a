"""The pipeline's steps declared once: the table is complete and its data flow closed, each step has its done
marker, training starts through torchrun_command, and the local runner is a loop over the table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ocrtune.config import load_config
from ocrtune.errors import UserError
from ocrtune.platform import local_runner, steps
from ocrtune.platform.local_runner import LocalRun
from ocrtune.platform.steps import STEPS, StepContext, register_tags, registered_line
from ocrtune.training.distributed import torchrun_command

EIGHT = ("fonts", "generate", "lmdb", "train", "export", "evaluate", "register", "promote")
# written by the runner itself, not by a step: the run's config, and promote's frozen benchmark
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


def test_every_input_is_an_earlier_output_and_every_done_marker_an_output():
    written = set(RUNNER_WRITES)
    for s in STEPS:
        for rel in s.inputs:
            assert _covered(rel, written), f"{s.name} reads {rel}, which no earlier step writes"
        if s.done is not None:
            assert _covered(s.done, s.outputs), f"{s.name}: done marker {s.done} is not one of its outputs"
        if s.capture is not None:
            assert s.capture.file in s.outputs
        if s.publish is not None:
            assert s.publish in s.outputs
        written.update(s.outputs)
    assert [s.name for s in STEPS if s.done is None] == ["fonts"]
    assert steps.TRAIN_RESULT_FILE in steps.step("train").outputs
    assert steps.TRAIN_RESULT_FILE in steps.step("register").inputs


def test_done_markers(cfg, tmp_path):
    ctx = StepContext(tmp_path, cfg)
    markers = {s.name: s.done_path(ctx) for s in STEPS}
    assert markers == {
        "fonts": None,
        "generate": tmp_path / "data/card.json",
        "lmdb": tmp_path / "lmdb",
        "train": tmp_path / "train/best_accuracy.pth",
        "export": tmp_path / f"export/{cfg.export.name}.pth",
        "evaluate": tmp_path / "parity.json",
        "register": tmp_path / "registered.txt",
        "promote": tmp_path / "promotion.json",
    }
    train = steps.step("train")
    assert not train.is_done(ctx)
    (tmp_path / "train").mkdir()
    (tmp_path / "train/best_accuracy.pth").write_bytes(b"")
    assert train.is_done(ctx) and not steps.step("fonts").is_done(ctx)


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


def test_stdout_captures():
    out = "noise\nregistered: models:/m/3 (aliases: challenger)\n"
    assert registered_line(out) == "registered: models:/m/3 (aliases: challenger)\n"
    with pytest.raises(UserError, match="register printed no"):
        registered_line("nothing")
    assert steps.step("evaluate").capture.text('{"a": "한"}') == '{\n  "a": "한"\n}'
    assert steps.step("promote").capture.text('{"a": 1}') == '{\n  "a": 1\n}'


class FakeSteps:
    """Stands in for the step processes: records each command and writes what the real step would."""

    def __init__(self, run: LocalRun):
        self.run, self.commands = run, []

    def __call__(self, argv: list[str], capture: bool = False) -> str:
        self.commands.append(argv)
        d, sub = self.run.dir, argv[argv.index("ocrtune") + 1]
        if sub == "data" and argv[argv.index("ocrtune") + 2] == "generate":
            (d / "data/test").mkdir(parents=True)
            (d / "data/card.json").write_text(json.dumps({"content_sha256": "c" * 64}))
        elif sub == "data":
            (d / "lmdb/test").mkdir(parents=True)
        elif sub == "train":
            (d / "train").mkdir()
            (d / "train/best_accuracy.pth").write_bytes(b"weights")
            (d / "train/train_result.json").write_text(json.dumps({"base_model": "english_g2"}))
        elif sub == "export":
            (d / "export").mkdir()
            (d / f"export/{self.run.cfg.export.name}.pth").write_bytes(b"")
        elif sub == "evaluate":
            return json.dumps(
                {"ocrtune_accuracy": 0.9, "easyocr_accuracy": 0.9, "agreement": 1.0, "ok": True}
            )
        elif sub == "register":
            return "registered: models:/ocrtune-korean/1 (aliases: challenger)\n"
        elif sub == "promote":
            assert argv[argv.index("--benchmark") + 1] == str(d / "lmdb/test")  # no object store here
            return json.dumps({"promoted": True, "reason": "no champion yet"})
        return ""


def test_the_local_runner_is_a_loop_over_the_table(tmp_path, monkeypatch):
    for k in ("MLFLOW_S3_ENDPOINT_URL", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("OCRTUNE_STACK_DIR", str(tmp_path / "no-stack"))
    lines: list[str] = []
    run = LocalRun("tiny", tmp_path / "runs", nproc=2, echo=lines.append)
    fake = FakeSteps(run)
    monkeypatch.setattr(run, "_exec", fake)
    summary = run.run()
    ctx = StepContext(run.dir, run.cfg, run_id=run.name, nproc=2, env={}, python=sys.executable)
    expected = [s.command(ctx) for s in STEPS]
    expected[-1] = steps.step("promote").command(
        StepContext(run.dir, run.cfg, benchmark=run.dir / "lmdb/test")
    )
    assert fake.commands == expected
    assert [ln for ln in lines if ln.startswith("[")] == [f"[{n}]" for n in EIGHT]
    assert any("(no object storage: no S3 endpoint" in ln for ln in lines)
    assert "  registered: models:/ocrtune-korean/1 (aliases: challenger)" in lines
    assert "  promoted: True (no champion yet)" in lines
    assert summary["registered"] == "registered: models:/ocrtune-korean/1 (aliases: challenger)"
    assert json.loads((run.dir / "summary.json").read_text()) == summary
    assert json.loads((run.dir / "parity.json").read_text())["ok"] is True
    assert not (run.dir / "train/checkpoint.pth").exists()  # base_model came from train_result.json

    # a rerun does no work: every step but fonts is cached by its done marker
    lines.clear()
    again = LocalRun("tiny", tmp_path / "runs", nproc=2, echo=lines.append)
    fake2 = FakeSteps(again)
    monkeypatch.setattr(again, "_exec", fake2)
    assert again.run()["registered"] == summary["registered"]
    assert [c[c.index("ocrtune") + 1] for c in fake2.commands] == ["fonts"]
    assert sum(ln.startswith("[") and " cached: " in ln for ln in lines) == 7


def test_stack_env_for_run_obeys_env_only(monkeypatch, tmp_path):
    monkeypatch.setenv("OCRTUNE_ENDPOINTS", "env-only")
    with pytest.raises(UserError, match="^MLFLOW_TRACKING_URI is not set, and OCRTUNE_ENDPOINTS=env-only"):
        local_runner.stack_env_for_run(tmp_path)
    monkeypatch.delenv("OCRTUNE_ENDPOINTS")
    with pytest.raises(UserError, match="is not running: ocrtune stack up"):
        local_runner.stack_env_for_run(tmp_path)


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
