"""The component bodies (``ocrtune.platform.kfp_steps``) chained for real on a tiny English run, once per session.

generate_data (40/10/10 crops in the handwriting fonts) -> build_lmdb -> train (the real english_g2, 2 steps,
one rank) -> export -> evaluate. Each link is kept on disk under pytest's base temp dir, so every test module
that needs a link reuses the one an earlier module built; and the helpers compile a component with the real
KFP compiler and return its spec.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from kfp import compiler

from ocrtune.platform import kfp_steps

PROFILE = "tiny-en"
CHARSET = "english_g2"


def compiled(component, tmp_path: Path) -> dict:
    """The component compiled by kfp's compiler, as the IR YAML's dict."""
    out = tmp_path / f"{component.name}.yaml"
    compiler.Compiler().compile(component, str(out))
    return yaml.safe_load(out.read_text())


def executor(spec: dict) -> dict:
    (only,) = spec["deploymentSpec"]["executors"].values()
    return only["container"]


def interface(spec: dict) -> tuple[dict, dict, dict]:
    """(parameter types, input artifact schema titles, output artifact schema titles) of the component."""
    root = spec["root"]
    params = {
        k: v["parameterType"] for k, v in root.get("inputDefinitions", {}).get("parameters", {}).items()
    }
    arts_in = {
        k: v["artifactType"]["schemaTitle"]
        for k, v in root.get("inputDefinitions", {}).get("artifacts", {}).items()
    }
    outs = root.get("outputDefinitions", {})
    arts_out = {k: v["artifactType"]["schemaTitle"] for k, v in outs.get("artifacts", {}).items()}
    arts_out.update({k: v["parameterType"] for k, v in outs.get("parameters", {}).items()})
    return params, arts_in, arts_out


def _link(base: Path, name: str) -> tuple[Path, bool]:
    d = base / "kfp-chain" / name
    return d, (d / ".done").exists()


def _done(d: Path, meta: dict) -> dict:
    (d / "meta.json").write_text(json.dumps(meta))
    (d / ".done").touch()
    return meta


def dataset(base: Path) -> tuple[Path, dict]:
    d, ok = _link(base, "generate")
    if not ok:
        d.mkdir(parents=True, exist_ok=True)
        meta = kfp_steps.generate_data(
            profile=PROFILE,
            words="",
            fonts="",
            train_count=40,
            val_count=10,
            test_count=10,
            img_h=64,
            charset=CHARSET,
            real_data="",
            real_ratio=0.0,
            seed=0,
            dataset_path=str(d / "dataset"),
            card_path=str(d / "card.html"),
        )
        _done(d, meta)
    return d / "dataset", json.loads((d / "meta.json").read_text())


def lmdb(base: Path) -> Path:
    d, ok = _link(base, "lmdb")
    if not ok:
        d.mkdir(parents=True, exist_ok=True)
        _done(d, kfp_steps.build_lmdb(dataset_path=str(dataset(base)[0]), lmdb_path=str(d / "lmdb")))
    return d / "lmdb"


def checkpoint(base: Path) -> tuple[Path, dict]:
    d, ok = _link(base, "train")
    if not ok:
        d.mkdir(parents=True, exist_ok=True)
        result = kfp_steps.train(
            profile=PROFILE,
            base_model="english_g2",
            charset=CHARSET,
            steps=2,
            batch_size=8,
            lr=0.00005,
            num_nodes=1,
            gpus_per_node=1,
            backend="local",
            namespace="kubeflow",
            lmdb_path=str(lmdb(base)),
            checkpoint_path=str(d / "checkpoint"),
            curves_path=str(d / "curves.html"),
        )
        _done(d, result)
    return d / "checkpoint", json.loads((d / "meta.json").read_text())


def model(base: Path) -> Path:
    d, ok = _link(base, "export")
    if not ok:
        d.mkdir(parents=True, exist_ok=True)
        meta = kfp_steps.export(
            profile=PROFILE,
            charset=CHARSET,
            checkpoint_path=str(checkpoint(base)[0]),
            model_path=str(d / "model"),
        )
        _done(d, meta)
    return d / "model"


def evaluation(base: Path) -> tuple[Path, dict]:
    d, ok = _link(base, "evaluate")
    if not ok:
        d.mkdir(parents=True, exist_ok=True)
        values = kfp_steps.evaluate(
            profile=PROFILE,
            model_path=str(model(base)),
            lmdb_path=str(lmdb(base)),
            dataset_path=str(dataset(base)[0]),
            base_model="english_g2",
            charset=CHARSET,
            evaluation_path=str(d / "evaluation.json"),
            report_path=str(d / "report.html"),
        )
        _done(d, values)
    return d / "evaluation.json", json.loads((d / "meta.json").read_text())
