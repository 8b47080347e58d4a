"""MLflow Model Registry against the real local stack: register, gate, race, rollback, pull."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from support.cli import run_cli
from support.english_models import export_english, make_benchmark

from ocrtune.errors import UserError
from ocrtune.platform.stack import free_ports
from ocrtune.release import registry
from ocrtune.release.frozen_benchmark import load_benchmark, reader_accuracy


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return {
        "good": export_english(root / "good"),
        "bad": export_english(root / "bad", noise=3.0, seed=1),
        "bad2": export_english(root / "bad2", noise=3.0, seed=2),
        "bench": make_benchmark(root / "bench"),
    }


@pytest.fixture()
def env(stack_env, monkeypatch):
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    return stack_env


def _aliases(name):
    """alias -> version, as the registered model itself records them."""
    return dict(registry.client().get_registered_model(name).aliases)


def test_gate_promotion_rollback_and_pull(env, models, tmp_path):
    name = "gate-test"
    bench = load_benchmark(models["bench"])
    good, bad = reader_accuracy(models["good"], bench), reader_accuracy(models["bad"], bench)
    assert good > bad + 0.2, (good, bad)  # the perturbed model really is worse, else the test proves nothing

    v1, created = registry.register(models["bad"], name, tags={"base_model": "english_g2"})
    assert created and v1.aliases == ["challenger"] and v1.tags["base_model"] == "english_g2"
    assert (
        v1.tags["charset_size"] == "96" and v1.tags["recog_network"] == "custom" and "git_commit" in v1.tags
    )
    again, created = registry.register(models["bad"], name)
    assert not created and again.version == v1.version  # no duplicate version for the same files

    score = lambda d: reader_accuracy(d, bench)  # noqa: E731
    first = registry.promote(name, score, bench.id)
    assert first["promoted"] and "first version" in first["reason"]
    assert _aliases(name)["champion"] == v1.version

    v2, _ = registry.register(models["good"], name)
    dry = registry.promote(name, score, bench.id, dry_run=True)
    assert dry["promoted"] and dry["dry_run"] and _aliases(name)["champion"] == v1.version
    d2 = registry.promote(name, score, bench.id, min_delta=0.05)
    assert d2["promoted"] and d2["challenger_score"] == good and d2["champion_score"] == bad
    aliases = _aliases(name)
    assert aliases["champion"] == v2.version and aliases["previous-champion"] == v1.version
    tags = registry.client().get_model_version(name, v2.version).tags
    assert tags["promotion.promoted"] == "True" and float(tags["promotion.champion_score"]) == bad

    v3, _ = registry.register(models["bad2"], name)
    d3 = registry.promote(name, score, bench.id)
    assert not d3["promoted"] and "does not win" in d3["reason"]
    assert _aliases(name)["champion"] == v2.version
    assert registry.client().get_model_version(name, v3.version).tags["promotion.promoted"] == "False"

    rb = registry.rollback(name)
    assert rb["champion"] == v1.version and _aliases(name)["champion"] == v1.version
    with pytest.raises(UserError, match="no 'previous-champion'"):
        registry.rollback(name)

    r = run_cli("pull", f"models:/{name}@champion", "--to", str(tmp_path / "pulled"))
    assert r.returncode == 0, r.stderr[-1500:]
    assert "import easyocr" in r.stdout and "recog_network='custom'" in r.stdout
    assert sorted(p.name for p in (tmp_path / "pulled").iterdir()) == [
        "custom.pth",
        "custom.py",
        "custom.yaml",
    ]
    assert reader_accuracy(tmp_path / "pulled", bench) == bad  # champion is v1 again after the rollback


def test_racing_promotions_leave_one_champion(env, models):
    name = "race-test"
    registry.register(models["bad"], name)
    registry.promote(name, lambda d: 0.0, "none")
    v2, _ = registry.register(models["good"], name)
    cmd = [
        sys.executable,
        "-m",
        "ocrtune",
        "promote",
        name,
        "--benchmark",
        str(models["bench"]),
        "--limit",
        "6",
    ]
    procs = [
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **env}
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-800:] for o in outs]
    decisions = [json.loads(o[0]) for o in outs]
    assert sum(d["promoted"] for d in decisions) == 1, decisions
    assert any(d.get("reason") == "challenger is already the champion" for d in decisions)
    aliases = _aliases(name)
    assert aliases["champion"] == v2.version and aliases["previous-champion"] != v2.version
    assert "ocrtune.promotion_lock" not in registry.client().get_registered_model(name).tags


def test_registry_bad_input(env, models, tmp_path):
    r = run_cli("pull", "models:/no-such-model@champion", "--to", str(tmp_path / "x"))
    assert r.returncode == 2 and "no registered model named 'no-such-model'" in r.stderr
    registry.register(models["good"], "alias-test")
    r = run_cli("pull", "models:/alias-test@nope", "--to", str(tmp_path / "x"))
    assert r.returncode == 2 and "has no alias 'nope'" in r.stderr
    (port,) = free_ports(1)
    r = run_cli(
        "register",
        "--from-dir",
        str(models["good"]),
        "--name",
        "x",
        env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}"},
    )
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"ocrtune: error: MLflow tracking server http://127.0.0.1:{port} unreachable ([Errno 111] Connection refused)"
    ]
    # the export stays on disk and registers later, once
    r = run_cli("register", "--from-dir", str(models["good"]), "--name", "alias-test")
    assert r.returncode == 0 and r.stdout.startswith("already registered: models:/alias-test/1")
    r = run_cli("register", "--from-dir", str(tmp_path), "--name", "x")
    assert r.returncode == 2 and "expected exactly one NAME.pth" in r.stderr
