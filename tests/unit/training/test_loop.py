"""Training in one process on tiny real LMDBs: learning, exact resume, non-finite losses, bad input; plus the
sampler and the launch environment.

Images are words drawn with a real handwriting font (NanumPen) and written with ocrtune's own LMDB writer;
the model is the real None-VGG-BiLSTM-CTC with a small head, so a step takes about a second on 2 cores.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import time
from pathlib import Path

import lmdb
import numpy as np
import pytest
import torch
from support.train_data import (
    CHARSET,
    FONTS,
    _render,
    cli_env,
    config_yaml,
    tiny_cfg,
)

from ocrtune.config import TrainConfig
from ocrtune.errors import UserError
from ocrtune.platform.stack import free_ports
from ocrtune.training import checkpoint as ckpt
from ocrtune.training import distributed as launch
from ocrtune.training.loader import BucketBatchSampler, LmdbSource, quotas
from ocrtune.training.loop import Job, run


def write_raw_lmdb(path: Path, records: list[tuple[bytes, str]]) -> Path:
    """DTRB keys written directly, to build LMDBs the real writer would refuse (corrupt, empty)."""
    path.mkdir(parents=True)
    env = lmdb.open(str(path), map_size=64 << 20)
    with env.begin(write=True) as txn:
        for i, (image, label) in enumerate(records, 1):
            txn.put(b"image-%09d" % i, image)
            txn.put(b"label-%09d" % i, label.encode())
        txn.put(b"num-samples", str(len(records)).encode())
    env.close()
    return path


# ---- sampler and launch: no model involved -----------------------------------------------------------
def test_quotas_split_batch_by_ratio():
    assert quotas(10, [0.5, 0.5]) == [5, 5]
    assert quotas(10, [0.7, 0.3]) == [7, 3]
    assert sum(quotas(7, [1, 1, 1])) == 7 and min(quotas(7, [1, 1, 1])) >= 2
    with pytest.raises(UserError):
        quotas(1, [1, 1])


def test_sampler_shards_by_rank_mixes_by_ratio_and_resumes_from_any_step():
    rng = np.random.default_rng(0)
    widths = [rng.choice([64, 128, 192, 256], 50), rng.choice([64, 128], 30)]
    world, bs, pool = 2, 8, 4
    samplers = [
        BucketBatchSampler(widths, bs, [0.75, 0.25], r, world, seed=3, pool=pool) for r in range(world)
    ]
    per_source = [0, 0]
    for step in range(pool):
        batches = [s.batch_at(step) for s in samplers]
        assert all(len(b) == bs for b in batches)
        # widths in one batch come from one sorted run: at most two neighbouring buckets
        for b in batches:
            ws = sorted({int(widths[s][i]) for s, i, _ in b})
            assert ws[-1] - ws[0] <= 64
        seeds = [seed for b in batches for _, _, seed in b]
        assert len(set(seeds)) == len(seeds)
        for b in batches:
            for s, _, _ in b:
                per_source[s] += 1
    assert per_source == [6 * pool * world, 2 * pool * world]  # exact ratio over a pool
    # the stream from step k is what an uninterrupted run sees from step k on
    it = iter(BucketBatchSampler(widths, bs, [0.75, 0.25], 1, world, seed=3, pool=pool, start_step=5))
    assert [next(it) for _ in range(6)] == [samplers[1].batch_at(k) for k in range(5, 11)]
    # every sample of a source is used once per cycle before any repeats
    single = BucketBatchSampler([widths[0]], 10, None, 0, 1, seed=1, pool=5)
    seen = [i for k in range(5) for _, i, _ in single.batch_at(k)]
    assert sorted(seen) == list(range(50))


def test_launch_reads_torchrun_pytorchjob_and_single_process_environments():
    assert launch.detect({}) == launch.DistEnv()
    torchrun = {
        "WORLD_SIZE": "4",
        "RANK": "3",
        "LOCAL_RANK": "1",
        "LOCAL_WORLD_SIZE": "2",
        "MASTER_ADDR": "10.0.0.1",
        "MASTER_PORT": "29500",
    }
    env = launch.detect(torchrun)
    assert (env.rank, env.world_size, env.local_rank, env.local_world_size) == (3, 4, 1, 2)
    assert launch.threads_per_rank(env, cores=16) == 8
    pytorchjob = {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "job-master-0", "MASTER_PORT": "23456"}
    env = launch.detect(pytorchjob)
    assert (env.local_rank, env.local_world_size, env.master_addr, env.master_port) == (
        0,
        1,
        "job-master-0",
        23456,
    )
    assert launch.threads_per_rank(env, cores=16) == 16
    for bad, msg in (
        ({"WORLD_SIZE": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "RANK is not"),
        ({"WORLD_SIZE": "two"}, "not an integer"),
        ({"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "a", "MASTER_PORT": "1"}, "outside"),
        ({"WORLD_SIZE": "2", "RANK": "0"}, "MASTER_ADDR"),
    ):
        with pytest.raises(UserError, match=msg):
            launch.detect(bad)
    # a TrainJob's PET_* variables are torchrun's own: only what they leave out is passed
    pet = {"PET_NNODES": "2", "PET_NPROC_PER_NODE": "8", "PET_NODE_RANK": "1", "PET_MASTER_ADDR": "m"}
    cmd = launch.torchrun_command(["--config", "full"], nproc_per_node=4, env=pet, python="python")
    assert cmd == ["python", "-m", "torch.distributed.run", "-m", "ocrtune", "train", "--config", "full"]
    cmd = launch.torchrun_command(["--config", "tiny"], nproc_per_node=2, env={}, python="python")
    assert cmd[3:8] == ["--standalone", "--nnodes", "1", "--nproc_per_node", "2"]


def test_unreachable_rendezvous_fails_fast_with_one_line(data, tmp_path):
    (port,) = free_ports(1)
    env = cli_env(
        WORLD_SIZE="2",
        RANK="1",
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        OCRTUNE_RENDEZVOUS_TIMEOUT="2",
    )
    start = time.monotonic()
    r = subprocess.run(
        [sys.executable, "-m", "ocrtune", "train", "--train", data["train"], "--val", data["val"]]
        + ["--out", str(tmp_path / "out"), "--no-mlflow"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2, r.stderr[-2000:]
    assert time.monotonic() - start < 60
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and f"rendezvous 127.0.0.1:{port} unreachable after 2s" in lines[0], r.stderr


# ---- bad input ------------------------------------------------------------------------------------------
def test_lmdb_sources_filter_count_and_refuse_bad_input(data, tmp_path):
    good = _render("cab", FONTS[0])
    records = [(good, "cab"), (good, "toolongforit"), (good, "xyz"), (good, ""), (b"\xff\xd8broken", "ab")]
    src = LmdbSource(write_raw_lmdb(tmp_path / "mixed", records * 30), CHARSET, 8, corrupt_threshold=0.25)
    stats = src.stats.as_dict()
    assert stats["total"] == 150 and stats["kept"] == 30
    assert (stats["too_long"], stats["out_of_charset"], stats["empty_label"], stats["corrupt"]) == (
        30,
        30,
        30,
        30,
    )
    assert stats["top_missing_chars"] and set(stats["top_missing_chars"]) <= set("xyz")
    with pytest.raises(UserError, match="30 of 150 records are corrupt"):
        LmdbSource(tmp_path / "mixed", CHARSET, 8, corrupt_threshold=0.1)
    with pytest.raises(UserError, match="no such LMDB"):
        LmdbSource(tmp_path / "missing", CHARSET, 8)
    with pytest.raises(UserError, match="holds no samples"):
        LmdbSource(write_raw_lmdb(tmp_path / "empty", []), CHARSET, 8)
    with pytest.raises(UserError, match="none of 2 records is usable"):
        LmdbSource(write_raw_lmdb(tmp_path / "none", [(good, "zzz"), (good, "qq")]), CHARSET, 8)


def test_cli_reports_missing_lmdb_as_one_line(data, tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "ocrtune", "train", "--train", str(tmp_path / "nope"), "--val", data["val"]]
        + [
            "--out",
            str(tmp_path / "out"),
            "--no-mlflow",
            "--config",
            str(config_yaml(tmp_path / "c.yaml", data)),
        ],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and r.stderr.strip() == f"ocrtune: error: {tmp_path / 'nope'}: no such LMDB"


# ---- training -------------------------------------------------------------------------------------------
def test_single_process_training_learns_logs_like_dtrb_and_keeps_best(data, tmp_path, monkeypatch):
    from ocrtune.model.surgery import build_model
    from ocrtune.training.loader import Collate, LmdbDataset, eval_batches
    from ocrtune.training.validation import validate

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_cfg(data, amp="off")
    out = tmp_path / "run"
    summary = run(cfg, Job(train=[data["train"]], val=data["val"], out=str(out), progress=False))
    assert summary["status"] == "finished" and summary["step"] == 6 and summary["bad_steps"] == 0
    assert [h["step"] for h in summary["history"]] == [3, 6]

    # the untrained model (same seed) scores a far higher validation loss than the trained one
    torch.manual_seed(cfg.seed)
    fresh, _ = build_model(None, CHARSET)
    val = LmdbSource(data["val"], CHARSET, cfg.max_label_length)
    ds, collate = LmdbDataset([val]), Collate(CHARSET)
    before = validate(fresh, (collate([ds[k] for k in b]) for b in eval_batches(val, 4)), CHARSET)["loss"]
    assert summary["history"][-1]["valid_loss"] < 0.5 * before

    text = (out / "log_train.txt").read_text("utf-8")
    assert "[3/6] Train loss: " in text and "[6/6] Train loss: " in text and "Elapsed_time: " in text
    assert "Current_accuracy : " in text and "Best_norm_ED     : " in text
    assert "Ground Truth              | Prediction                | Confidence Score & T/F" in text
    assert "per font: NanumBrush" in text or "per font: NanumPen" in text
    assert "MLflow not logged: MLFLOW_TRACKING_URI is not set" in text
    weights = torch.load(out / "best_norm_ED.pth", weights_only=True)
    assert all(k.startswith("module.") for k in weights)
    assert (out / "best_accuracy.pth").is_file()
    state = ckpt.load(out / "checkpoint.pth")
    assert state["step"] == 6 and state["charset"] == CHARSET
    # training's own output: what it started from and where it ended, for the steps after it
    result = json.loads((out / "train_result.json").read_text("utf-8"))
    assert result["final_step"] == 6 and result["checkpoint"] == str(out / "checkpoint.pth")
    assert result["base_model"] == summary["base_model"] == state["base_model"]
    assert result["best_accuracy"] == summary["best_accuracy"] and result["status"] == "finished"
    with pytest.raises(UserError, match="pass --resume"):
        run(cfg, Job(train=[data["train"]], val=data["val"], out=str(out), progress=False))


def shift_augment(image, rng):
    """A real augmentation drawn from the per-sample generator: a random horizontal shift."""
    from PIL import ImageChops

    return ImageChops.offset(image, int(rng.integers(-3, 4)), 0)


def test_resume_equals_an_uninterrupted_run_bitwise(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # bf16 autocast (what amp auto picks on a CPU with AVX512-BF16/AMX) resumes bitwise too
    cfg = tiny_cfg(data, max_steps=4, val_interval=2, checkpoint_interval=100, amp="bf16")
    ratios = [0.5, 0.5]
    common = dict(train=[data["train"], data["val"]], val=data["val"], ratios=ratios, augment=shift_augment)
    whole = run(cfg, Job(out=str(tmp_path / "whole"), progress=False, **common))
    first = run(cfg, Job(out=str(tmp_path / "split"), stop_at=2, progress=False, **common))
    assert first["status"] == "stopped" and first["step"] == 2
    # resumed with a data-loader worker process: batches and augmentation do not depend on where they are made
    resumed = run(
        dataclasses.replace(cfg, workers=1),
        Job(out=str(tmp_path / "split"), resume=True, progress=False, **common),
    )
    assert resumed["step"] == 4
    a, b = ckpt.load(tmp_path / "whole" / "checkpoint.pth"), ckpt.load(tmp_path / "split" / "checkpoint.pth")
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for (ka, sa), (kb, sb) in zip(
        a["optimizer"]["state"].items(), b["optimizer"]["state"].items(), strict=True
    ):
        assert ka == kb and all(torch.equal(sa[n], sb[n]) for n in sa)
    assert a["scheduler"] == b["scheduler"]
    assert whole["history"] == resumed["history"]
    stopped = json.loads((tmp_path / "split" / "train_result.json").read_text("utf-8"))
    assert stopped["final_step"] == 4 and stopped["base_model"] == whole["base_model"]


def test_resume_with_other_trainable_parameters_is_one_clear_error(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = tiny_cfg(data, max_steps=4, val_interval=100, checkpoint_interval=100, amp="off")
    job = dict(train=[data["train"]], val=data["val"], out=str(tmp_path / "run"), progress=False)
    assert run(cfg, Job(stop_at=1, **job))["step"] == 1
    frozen = dataclasses.replace(cfg, freeze_feature_extractor=True)
    with pytest.raises(UserError, match="its optimizer does not fit this run's trainable parameters"):
        run(frozen, Job(resume=True, **job))


def test_head_lr_scale_gives_the_output_layer_its_own_learning_rate():
    from ocrtune.model.network import Model
    from ocrtune.model.surgery import freeze
    from ocrtune.training.optim import LRFactor, make_optimizer, param_groups

    model = Model(1, 256, 256, 12)
    cfg = TrainConfig(lr=1e-3, head_lr_scale=10.0, warmup_steps=2, max_steps=10, optimizer="adamw")
    groups = param_groups(model, cfg)
    head = {id(p) for p in model.Prediction.parameters()}
    assert [g["lr"] for g in groups] == [1e-3, 1e-2]
    assert {id(p) for p in groups[1]["params"]} == head
    assert not head & {id(p) for p in groups[0]["params"]}
    opt = make_optimizer(cfg, groups)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRFactor("cosine", 2, 10))
    for _ in range(5):  # past the warm-up, into the cosine
        opt.step()  # no gradients: changes nothing, keeps the optimizer-then-scheduler order
        sched.step()
    lrs = sched.get_last_lr()
    assert lrs[1] == pytest.approx(10 * lrs[0]) and 0 < lrs[0] < 1e-3  # one schedule, both groups
    freeze(model, feature_extractor=True, sequence_model=True)
    only_head = param_groups(model, cfg)
    assert len(only_head) == 1 and only_head[0]["lr"] == 1e-2


def test_amp_on_cpu_is_bf16_where_native_and_never_fp16():
    from ocrtune.training.distributed import amp_setup, cpu_has_native_bf16

    cpu = torch.device("cpu")
    assert amp_setup("off", cpu) == (None, False)
    assert amp_setup("bf16", cpu) == (torch.bfloat16, False)
    assert amp_setup("auto", cpu) == ((torch.bfloat16, False) if cpu_has_native_bf16() else (None, False))
    with pytest.raises(UserError, match="fp16 needs a GPU"):
        amp_setup("fp16", cpu)


def test_non_finite_loss_is_skipped_counted_and_aborts_after_n_in_a_row(data, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    # a learning rate of 1e30: after one Adam step the weights are ~1e30 and every activation overflows
    cfg = tiny_cfg(data, lr=1e30, warmup_steps=0, schedule="constant", max_bad_steps=3, max_steps=20)
    with pytest.raises(UserError, match=r"not finite in 3 steps in a row \(step 4, 3 skipped in all\)"):
        run(cfg, Job(train=[data["train"]], val=data["val"], out=str(tmp_path / "nan"), progress=False))


def test_reporter_is_silent_on_ranks_other_than_0(tmp_path):
    from ocrtune.training.report import Reporter
    from ocrtune.training.state import Counters

    out = tmp_path / "rank1"
    rep = Reporter(False, out, TrainConfig(), progress=True)
    rep.note("not written")
    rep.step(1, 0.5, 0.5, 10.0, 0, 1e-3)
    rep.finish("finished", Counters(), 1, {"step": 1})
    assert not out.exists() and rep.outputs is None and rep.run_id is None
