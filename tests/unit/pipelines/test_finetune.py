"""The fine-tuning pipeline's definition: typed parameters with the tiny profile's defaults, the task graph,
the train task's cluster placement in the compiled platform spec, secrets never parameters, and the golden
compiled YAML.

Regenerate the golden file after an intended change (then review the diff):
    OCRTUNE_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/unit/pipelines/test_finetune.py
which runs ``OCRTUNE_IMAGE= ocrtune pipeline compile -o tests/unit/pipelines/golden/finetune.yaml``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from ocrtune.pipelines import finetune
from support.cli import run_cli

from ocrtune.config import load_config
from ocrtune.platform import kfp_client

GOLDEN = Path(__file__).parent / "golden" / "finetune.yaml"
UPDATE_ENV = "OCRTUNE_UPDATE_GOLDEN"
CLEAN_ENV = {"OCRTUNE_IMAGE": "", "OCRTUNE_TRAINER_IMAGE": ""}  # the released image tags in the golden file
ORDER = ["generate-data", "build-lmdb", "train", "export", "evaluate", "register"]


def compiled(tmp_path: Path, *flags: str) -> tuple[dict, dict, Path]:
    out = tmp_path / "pipeline.yaml"
    res = run_cli("pipeline", "compile", "-o", str(out), *flags, env=CLEAN_ENV, timeout=120)
    assert res.returncode == 0, res.stderr
    pipeline_spec, platform_spec = yaml.safe_load_all(out.read_text(encoding="utf-8"))
    return pipeline_spec, platform_spec, out


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return compiled(tmp_path_factory.mktemp("compile"))


def normalise(text: str) -> str:
    """Only what legitimately varies between otherwise equal compilations: the kfp SDK's version."""
    return re.sub(r"^sdkVersion: .*$", "sdkVersion: <kfp>", text, flags=re.M)


def test_parameters_are_typed_with_the_tiny_profiles_defaults(spec):
    params = spec[0]["root"]["inputDefinitions"]["parameters"]
    kinds = {k: v["parameterType"] for k, v in params.items()}
    assert kinds["train_count"] == kinds["steps"] == kinds["gpus_per_node"] == "NUMBER_INTEGER"
    assert kinds["lr"] == kinds["min_delta"] == kinds["real_ratio"] == "NUMBER_DOUBLE"
    assert kinds["auto_promote"] == "BOOLEAN" and kinds["real_data"] == kinds["backend"] == "STRING"
    tiny = load_config("tiny")
    defaults = {k: v.get("defaultValue") for k, v in params.items()}
    assert defaults["train_count"] == tiny.data.train_count and defaults["test_count"] == tiny.data.test_count
    assert defaults["img_h"] == tiny.data.height and defaults["charset"] == tiny.train.charset
    assert defaults["steps"] == tiny.train.max_steps and defaults["lr"] == tiny.train.lr
    assert defaults["batch_size"] == tiny.train.batch_size and defaults["base_model"] == tiny.train.pretrained
    assert defaults["model_name"] == tiny.registry.model_name and defaults["backend"] == "local"
    expected = {"profile", "words", "fonts", "val_count", "num_nodes", "namespace", "seed"}
    assert expected <= set(params)
    assert spec[0]["pipelineInfo"]["name"] == "ocrtune-finetune" and spec[0]["pipelineInfo"]["description"]


def test_secrets_are_never_pipeline_parameters(spec):
    params = spec[0]["root"]["inputDefinitions"]["parameters"]
    assert not [p for p in params if re.search(r"key|secret|token|password|uri|endpoint", p, re.I)]


def test_the_task_graph_runs_the_steps_in_order_and_promote_only_when_asked(spec):
    tasks = spec[0]["root"]["dag"]["tasks"]
    for before, after in zip(ORDER, ORDER[1:], strict=False):
        assert before in tasks[after].get("dependentTasks", []) or after == "register"
    assert set(tasks["register"]["dependentTasks"]) == {"evaluate", "export", "generate-data", "train"}
    condition = [t for t in tasks.values() if "triggerPolicy" in t]
    assert len(condition) == 1 and "auto_promote" in condition[0]["triggerPolicy"]["condition"]
    inner = spec[0]["components"][condition[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert list(inner) == ["promote"]
    channel = inner["promote"]["inputs"]["parameters"]["version"]["componentInputParameter"]
    assert condition[0]["inputs"]["parameters"][channel]["taskOutputParameter"]["producerTask"] == "register"
    assert tasks["register"]["cachingOptions"] == {}  # not cached
    for data in ("generate-data", "build-lmdb", "export"):
        assert (
            tasks[data]["cachingOptions"] == {"enableCache": True}
            and tasks[data]["retryPolicy"]["maxRetryCount"]
        )
    run_id = tasks["register"]["inputs"]["parameters"]["pipeline_run_id"]["runtimeValue"]["constant"]
    assert run_id == "{{$.pipeline_job_uuid}}"


def test_the_train_task_carries_its_cluster_placement(spec):
    executors = spec[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = executors["exec-train"]
    assert train["nodeSelector"]["labels"] == {"ocrtune.dev/pool": "gpu"}
    assert train["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "present", "effect": "NoSchedule"}
    ]
    assert {s["secretName"] for s in train["secretAsEnv"]} == {"ocrtune-s3", "ocrtune-mlflow"}
    envs = {e["envVar"] for s in train["secretAsEnv"] for e in s["keyToEnv"]}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "MLFLOW_TRACKING_URI"} <= envs
    assert train["emptyDirMounts"] == [
        {"medium": "Memory", "mountPath": "/dev/shm", "sizeLimit": "2Gi", "volumeName": "dshm"}
    ]
    assert int(train["activeDeadlineSeconds"]) == finetune.TRAIN_TIMEOUT_S
    resources = spec[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]
    assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert "gpus_per_node" in resources["accelerator"]["resourceCount"]
    assert all("nodeSelector" not in executors[e] for e in executors if e != "exec-train")  # off the GPU pool
    assert "exec-build-lmdb" not in executors  # no secrets needed: it reads only its input artifact
    assert (
        spec[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["image"]
        == "ghcr.io/ocrtune/ocrtune:0.1.0"
    )


def env_of(spec, executor: str) -> dict[str, str]:
    container = spec[0]["deploymentSpec"]["executors"][executor]["container"]
    return {e["name"]: e["value"] for e in container.get("env", [])}


def test_steps_read_endpoints_from_env_only_and_the_train_task_knows_the_gpu_pool(spec):
    executors = spec[0]["deploymentSpec"]["executors"]
    for name in ("exec-generate-data", "exec-train", "exec-evaluate", "exec-register", "exec-promote"):
        assert env_of(spec, name)["OCRTUNE_ENDPOINTS"] == "env-only", name
    env = env_of(spec, "exec-train")  # for the TrainJob / PyTorchJob the step creates
    assert json.loads(env["OCRTUNE_GPU_NODE_SELECTOR"]) == {"ocrtune.dev/pool": "gpu"}
    assert json.loads(env["OCRTUNE_GPU_TOLERATIONS"]) == [finetune.GPU_TAINT]
    assert env["OCRTUNE_TRAIN_TIMEOUT_S"] == str(finetune.TRAIN_TIMEOUT_S)
    assert "exec-build-lmdb" in executors and not env_of(spec, "exec-build-lmdb")


def test_launcher_only_and_placement_options_change_the_train_task(tmp_path):
    pipeline_spec, platform_spec, _ = compiled(
        tmp_path, "--launcher-only", "--gpu-pool", "pool=a100", "--train-timeout", "600"
    )
    train = platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert (
        "nodeSelector" not in train and "tolerations" not in train and train["activeDeadlineSeconds"] == "600"
    )
    assert "resources" not in pipeline_spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    _, placed, _ = compiled(tmp_path, "--gpu-pool", "pool=a100", "--gpu-taint", "gpu:NoExecute")
    train = placed["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert train["nodeSelector"]["labels"] == {"pool": "a100"}
    assert train["tolerations"] == [{"key": "gpu", "operator": "Exists", "effect": "NoExecute"}]
    env = env_of(({"deploymentSpec": pipeline_spec["deploymentSpec"]},), "exec-train")
    assert json.loads(env["OCRTUNE_GPU_NODE_SELECTOR"]) == {
        "pool": "a100"
    }  # --launcher-only: still for the job


@pytest.mark.parametrize(
    "flags, says",
    [
        (["--gpu-pool", "nolabel"], "--gpu-pool"),
        (["--gpu-taint", "k=v:Sometimes"], "--gpu-taint"),
        (["--train-timeout", "0"], "--train-timeout"),
    ],
)
def test_bad_compile_options_are_one_line(tmp_path, flags, says):
    res = run_cli("pipeline", "compile", "-o", str(tmp_path / "p.yaml"), *flags, timeout=120)
    assert res.returncode == 2 and says in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())


def test_declared_parameters_read_from_the_compiled_file(spec):
    declared = kfp_client.declared_parameters(GOLDEN)
    assert declared["steps"] == "NUMBER_INTEGER" and declared["auto_promote"] == "BOOLEAN"
    assert set(declared) == set(spec[0]["root"]["inputDefinitions"]["parameters"])


def test_the_compiled_pipeline_matches_the_golden_file(spec, tmp_path):
    _, _, out = compiled(tmp_path)
    text = out.read_text(encoding="utf-8")
    if os.environ.get(UPDATE_ENV):
        GOLDEN.write_text(text, encoding="utf-8")
    golden = GOLDEN.read_text(encoding="utf-8")
    assert normalise(text) == normalise(golden), (
        f"the compiled pipeline differs from {GOLDEN}; if intended, rerun with {UPDATE_ENV}=1 and review the diff"
    )
