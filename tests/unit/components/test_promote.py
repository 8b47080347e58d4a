"""promote: its compiled spec, and its body against the real stack: the gate on the frozen benchmark."""

import json

from ocrtune.components.image import image
from ocrtune.components.promote import promote
from support.kfp_chain import checkpoint, compiled, dataset, evaluation, executor, interface, lmdb, model

from ocrtune.platform import kfp_steps
from ocrtune.release.registry import client


def test_spec(tmp_path):
    spec = compiled(promote, tmp_path)
    assert executor(spec)["image"] == image()
    assert "pip install" not in " ".join(executor(spec)["command"])
    params, arts_in, arts_out = interface(spec)
    assert params == {"model_name": "STRING", "version": "STRING", "min_delta": "NUMBER_DOUBLE"}
    assert arts_in == {"lmdb": "system.Dataset"} and arts_out == {"Output": "STRING"}


def test_body_promotes_the_first_version_and_freezes_the_benchmark(
    stack_env, monkeypatch, tmp_path_factory, store
):
    for k, v in stack_env.items():
        monkeypatch.setenv(k, v)
    base = tmp_path_factory.getbasetemp()
    args = dict(model_path=str(model(base)), evaluation_path=str(evaluation(base)[0]))
    args.update(dataset_path=str(dataset(base)[0]), checkpoint_path=str(checkpoint(base)[0]))
    name_version = kfp_steps.register(model_name="kfp-promote", pipeline_run_id="run-p", **args)
    decision = json.loads(
        kfp_steps.promote(
            model_name="kfp-promote", version=name_version, min_delta=0.0, lmdb_path=str(lmdb(base))
        )
    )
    assert decision["promoted"], decision  # no champion yet: the first challenger wins
    version = name_version.split("/")[1]
    assert client().get_model_version_by_alias("kfp-promote", "champion").version == version
    assert store.is_published("benchmarks/kfp-promote")  # frozen: every later challenger is scored on it
