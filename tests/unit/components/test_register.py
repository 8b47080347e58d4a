"""register: its compiled spec (never cached: the pipeline's task says so), its body against the real stack."""

import json

import pytest
from ocrtune.components.image import image
from ocrtune.components.register import register
from support.kfp_chain import checkpoint, compiled, dataset, evaluation, executor, interface, model

from ocrtune.platform import kfp_steps
from ocrtune.release.registry import client


def test_spec(tmp_path):
    spec = compiled(register, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {"model_name": "STRING", "pipeline_run_id": "STRING"}
    assert arts_in == {
        "model": "system.Model",
        "evaluation": "system.Artifact",
        "dataset": "system.Dataset",
        "checkpoint": "system.Model",
    }
    assert arts_out == {"Output": "STRING"}


@pytest.fixture()
def registered(stack_env, monkeypatch, tmp_path_factory):
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    base = tmp_path_factory.getbasetemp()
    args = dict(model_path=str(model(base)), evaluation_path=str(evaluation(base)[0]))
    args.update(dataset_path=str(dataset(base)[0]), checkpoint_path=str(checkpoint(base)[0]))
    return kfp_steps.register(model_name="kfp-components", pipeline_run_id="run-1", **args), base


def test_body_registers_a_tagged_version(registered):
    name_version, base = registered
    name, version = name_version.split("/")
    assert name == "kfp-components" and int(version) >= 1
    mv = client().get_model_version(name, version)
    ev = json.loads(evaluation(base)[0].read_text())
    assert mv.tags["dataset_sha256"] == dataset(base)[1]["content_sha256"]
    assert mv.tags["base_model"] == "english_g2" and mv.tags["pipeline_run_id"] == "run-1"
    assert mv.tags["test_accuracy_easyocr"] == f"{ev['test']['easyocr']['word_acc']:.4f}"
    assert "challenger" in mv.aliases
