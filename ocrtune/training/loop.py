"""The training loop, written to be read top to bottom: one process or one rank of a DDP job, same code.

Each step: a width-bucketed batch of Reader-preprocessed crops, CTC loss (log_softmax, (T, B, C), as DTRB and
EasyOCR's trainer), a skipped step when the loss or the gradients are not finite, grad clipping, the optimizer
and the LR schedule. Every ``val_interval`` steps: validation on all ranks (sharded), a DTRB-style
log_train.txt, best-by-accuracy and best-by-norm_ED weights. Every ``checkpoint_interval`` steps and on
SIGTERM: a checkpoint from which ``--resume`` continues bit for bit as if never stopped.
"""

from __future__ import annotations

import logging
import math
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from ocrtune.charsets import load_charset
from ocrtune.config import TrainConfig
from ocrtune.errors import UserError
from ocrtune.training import checkpoint as ckpt
from ocrtune.training import distributed as launch
from ocrtune.training.loader import (
    BucketBatchSampler,
    Collate,
    LmdbDataset,
    LmdbSource,
    eval_batches,
    iterate,
    make_loader,
)
from ocrtune.training.validation import Scores, collect, ctc_loss, prediction_table

log = logging.getLogger(__name__)
PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving a checkpoint; rerun with --resume
CHECKPOINT = "checkpoint.pth"
LOG_FILE = "log_train.txt"
WARMUP_STEPS_NOT_TIMED = 2


class Preempted(Exception):
    """SIGTERM arrived; the step finished and a checkpoint was saved."""

    def __init__(self, step: int, path: str):
        super().__init__(f"stopped by SIGTERM after step {step}; checkpoint {path} (rerun with --resume)")
        self.step, self.path = step, path


@dataclass
class Job:
    """Everything a run needs besides the config: data, output, how to start and where to stop."""

    train: list[str]
    val: str
    out: str
    ratios: list[float] | None = None
    resume: bool = False
    stop_at: int | None = None  # save a checkpoint and stop after this step (as a preemption would)
    checkpoint_dir: str | None = None  # default: out; may be s3://bucket/prefix
    mlflow: bool | None = None  # True: must log, False: never, None: when MLFLOW_TRACKING_URI is set
    device: str = "auto"
    progress: bool = True
    augment: object | None = None  # (PIL image, numpy Generator) -> PIL image, before preprocess
    cache_dir: str | None = None


@dataclass
class Counters:
    """What went wrong and was survived; saved in checkpoints so a resumed run reports the whole story."""

    bad_steps: int = 0
    bad_in_a_row: int = 0
    dropped_samples: int = 0
    samples: int = 0
    best_accuracy: float = -1.0
    best_norm_ED: float = -1.0
    evals_without_gain: int = 0
    history: list[dict] = field(default_factory=list)


# ---- the pieces ---------------------------------------------------------------------------------
def pick_device(spec: str, dist_env: launch.DistEnv) -> torch.device:
    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is visible")
        torch.cuda.set_device(dist_env.local_rank)
        return torch.device("cuda", dist_env.local_rank)
    if spec != "cpu":
        raise UserError(f"--device {spec!r}: must be auto, cpu or cuda")
    return torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: oneDNN runs bf16 convolutions and matmuls natively (about 2x fp32 here)."""
    cpu = getattr(torch, "cpu", None)
    try:
        return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: do not guess
        return False


def amp_setup(mode: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use GradScaler).

    GPU: bf16 where supported, else fp16 with a GradScaler. CPU: bf16 when asked, and under ``auto`` only where
    the CPU has native bf16 (elsewhere bf16 is emulated and slower than fp32); fp16 is a GPU format.
    Weights and optimizer state stay fp32 either way, so checkpoints and exports are the same format.
    """
    if mode == "off":
        return None, False
    if device.type != "cuda":
        if mode == "fp16":
            raise UserError("train.amp fp16 needs a GPU: use bf16, auto or off on CPU")
        if mode == "bf16" or (mode == "auto" and cpu_has_native_bf16()):
            return torch.bfloat16, False
        return None, False
    if mode == "auto":
        mode = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return (torch.bfloat16, False) if mode == "bf16" else (torch.float16, True)


def param_groups(model: torch.nn.Module, cfg: TrainConfig) -> list[dict]:
    """Trainable parameters; the output layer gets ``head_lr_scale`` x the learning rate.

    After head surgery the rows of new characters start from scratch while the trunk is already trained:
    a faster head lets them catch up without shaking the trunk (the LR schedule scales both groups alike)."""
    head, body = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (head if name.split(".")[-2] == "Prediction" else body).append(p)
    groups = [{"params": body, "lr": cfg.lr}] if body else []
    if head:
        groups.append({"params": head, "lr": cfg.lr * cfg.head_lr_scale})
    return groups


def make_optimizer(cfg: TrainConfig, groups: list[dict]) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay)
    # DTRB's default: Adadelta(lr=1, rho=0.95, eps=1e-8)
    return torch.optim.Adadelta(groups, lr=cfg.lr, rho=0.95, eps=1e-8, weight_decay=cfg.weight_decay)


class LRFactor:
    """Linear warm-up, then cosine to zero (``cosine``), constant, or one-cycle (cosine up then down)."""

    def __init__(self, schedule: str, warmup: int, total: int):
        self.schedule, self.warmup, self.total = schedule, warmup, max(1, total)

    def __call__(self, step: int) -> float:
        if self.schedule == "onecycle":
            peak = max(1, self.warmup or self.total // 4)
            if step < peak:  # cosine rise from lr/25 to lr, then cosine decay to lr/1e4 (OneCycleLR's shape)
                return 1 / 25 + (1 - 1 / 25) * (1 - math.cos(math.pi * step / peak)) / 2
            t = min(1.0, (step - peak) / max(1, self.total - peak))
            return 1e-4 + (1 - 1e-4) * (1 + math.cos(math.pi * t)) / 2
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        t = min(1.0, (step - self.warmup) / max(1, self.total - self.warmup))
        return 0.5 * (1 + math.cos(math.pi * t))


def build(cfg: TrainConfig, charset: str, cache_dir: str | None) -> tuple[torch.nn.Module, dict]:
    """The model from the pretrained start (or its fallback), head surgery to ``charset``, freezing."""
    from ocrtune.model.surgery import build_model, freeze

    spec = cfg.pretrained if cfg.pretrained and cfg.pretrained.lower() != "none" else None
    torch.manual_seed(cfg.seed)  # fresh rows identical on every rank (DDP broadcasts rank 0's anyway)
    model, report = build_model(
        spec,
        charset,
        fresh_head=cfg.fresh_head,
        cache_dir=cache_dir,
        fallback=cfg.fallback_pretrained,
        seed=cfg.seed,
    )
    report["frozen"] = freeze(model, cfg.freeze_feature_extractor, cfg.freeze_sequence_model)
    return model, report


def _sum_across(values: list[float], device: torch.device, distributed: bool) -> list[float]:
    if not distributed:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def _gather(obj: object, distributed: bool, world: int) -> list:
    if not distributed:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


class StopFlag:
    """Set by SIGTERM; the current step finishes, a checkpoint is written, the process exits 75."""

    def __init__(self):
        self.set = False
        self._old = None

    def __enter__(self) -> StopFlag:
        def handler(signum, frame):
            self.set = True

        try:
            self._old = signal.signal(signal.SIGTERM, handler)
        except ValueError:  # not the main thread: no handler, nothing to restore
            self._old = None
        return self

    def __exit__(self, *exc) -> None:
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


class TrainLog:
    """DTRB's log_train.txt (rank 0 only); appended on resume."""

    def __init__(self, out: Path | None):
        self.path = None if out is None else out / LOG_FILE

    def write(self, text: str, echo: bool = False) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(text + "\n")
        if echo:
            from tqdm import tqdm

            tqdm.write(text, file=sys.stderr)


# ---- the run -----------------------------------------------------------------------------------------
def run(cfg: TrainConfig, job: Job) -> dict:
    """Train under whatever launcher started this process; returns rank 0's summary (others: theirs)."""
    dist_env = launch.detect()
    threads = launch.set_threads(dist_env)
    device = pick_device(job.device, dist_env)
    launch.init(dist_env, device.type)
    try:
        return _run(cfg, job, dist_env, device, threads)
    except BaseException:
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None and mlflow.active_run() is not None:  # a failed run is not left "running"
            mlflow.end_run(status="FAILED")
        raise
    finally:
        launch.shutdown()


def _run(cfg: TrainConfig, job: Job, dist_env: launch.DistEnv, device: torch.device, threads: int) -> dict:
    main, world, rank = dist_env.is_main, dist_env.world_size, dist_env.rank
    distributed = dist_env.distributed
    out = Path(job.out)
    ckpt_dir = job.checkpoint_dir or str(out)
    ckpt_path = ckpt.join(ckpt_dir, CHECKPOINT)
    if main:
        out.mkdir(parents=True, exist_ok=True)
    trainlog = TrainLog(out if main else None)

    # data: every rank scans the LMDBs (cheap), so a bad one fails everywhere with the same message
    charset = load_charset(cfg.charset)
    if job.ratios and len(job.ratios) != len(job.train):
        raise UserError(f"--ratio has {len(job.ratios)} values for {len(job.train)} training LMDBs")
    train_sources = [
        LmdbSource(p, charset, cfg.max_label_length, corrupt_threshold=cfg.corrupt_threshold)
        for p in job.train
    ]
    val_source = LmdbSource(job.val, charset, cfg.max_label_length, corrupt_threshold=cfg.corrupt_threshold)

    # resume or refuse to overwrite
    state = None
    if ckpt.exists(ckpt_path):
        if not job.resume:
            raise UserError(
                f"{ckpt_path} exists: pass --resume to continue that run, or choose another --out"
            )
        state = ckpt.load(ckpt_path)
        if state["charset"] != charset:
            raise UserError(f"{ckpt_path} was trained with another charset than '{cfg.charset}'")

    model, report = build(cfg, charset, job.cache_dir)
    base_model = (state or {}).get("base_model") or report["base"]  # a resumed run keeps its first start
    model.to(device)
    amp_dtype, use_scaler = amp_setup(cfg.amp, device)
    groups = param_groups(model, cfg)
    params = [p for g in groups for p in g["params"]]
    optimizer = make_optimizer(cfg, groups)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, LRFactor(cfg.schedule, cfg.warmup_steps, cfg.max_steps)
    )
    scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
    counters = Counters()
    start_step, mlflow_run_id = 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        try:
            optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # other parameter groups: frozen layers or head_lr_scale groups differ
            raise UserError(
                f"{ckpt_path}: its optimizer does not fit this run's trainable parameters ({exc}); "
                "resume with the checkpoint's freeze settings, or start a new --out"
            ) from None
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        counters = Counters(**state["counters"])
        start_step = int(state["step"])
        mlflow_run_id = state.get("mlflow_run_id")
        rngs = state["rng"]
        if len(rngs) == world:
            ckpt.set_rng_state(rngs[rank])
        elif main:
            log.warning(
                "checkpoint saved with %d ranks, resuming with %d: RNG streams restart", len(rngs), world
            )
        if state["sampler"]["world_size"] != world and main:
            trainlog.write(f"note: world size changed {state['sampler']['world_size']} -> {world}", echo=True)
    ddp = (
        torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
        if distributed
        else model
    )

    sampler = BucketBatchSampler(
        [s.widths for s in train_sources], cfg.batch_size, job.ratios, rank, world, cfg.seed, start_step
    )
    loader = make_loader(
        LmdbDataset(train_sources, job.augment), sampler, charset, cfg.workers, device.type == "cuda"
    )
    val_dataset = LmdbDataset([val_source])
    collate = Collate(charset)
    val_plan = eval_batches(val_source, cfg.batch_size)[rank::world]

    tracker = None
    if main:
        from ocrtune.training.tracking import Tracker, resolve_uri, system_info

        uri, mlflow_note = resolve_uri(job.mlflow)
        tracker = Tracker(uri)
        sysinfo = system_info()
        header = [
            f"ocrtune train: {world} rank(s), device {device}, {threads} threads per rank, amp {amp_dtype}",
            f"machine: {sysinfo}",
            f"model: {report.get('message', report)}",
            *([f"note: {report['note']}"] if report.get("note") else []),
            f"note: {mlflow_note}",
        ]
        for s in [*train_sources, val_source]:
            header.append(f"data {s.path}: {s.stats.as_dict()}")
        if state is not None:
            header.append(f"resumed from {ckpt_path} at step {start_step}")
        elif job.resume:
            header.append(f"note: --resume but no checkpoint at {ckpt_path}: starting fresh")
        trainlog.write("\n".join(header) + "\n" + "-" * 80, echo=True)
        params_log = {
            **asdict(cfg),
            "train": job.train,
            "val": job.val,
            "ratios": job.ratios,
            "world_size": world,
            "base_model": base_model,
        }
        params_log.update({f"sys.{k}": v for k, v in sysinfo.items()})
        tracker.start(out.name, params_log, {"ocrtune.role": "train"}, run_id=mlflow_run_id)
        tracker.dataset_cards(job.train, "train")
        tracker.dataset_cards([job.val], "val")

    def save_checkpoint(step: int) -> str:
        rngs = _gather(ckpt.rng_state(), distributed, world)
        if main:
            ckpt.save(
                {
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "step": step,
                    "rng": rngs,
                    "sampler": sampler.state(step),
                    "counters": asdict(counters),
                    "charset": charset,
                    "base_model": base_model,
                    "config": asdict(cfg),
                    "mlflow_run_id": tracker.run_id if tracker else None,
                },
                ckpt_path,
            )
        return ckpt_path

    def validate(step: int, train_loss: float, started: float) -> bool:
        """Score on all ranks, log on rank 0; True when early stopping says stop."""
        batches = (collate([val_dataset[k] for k in b]) for b in val_plan)
        # on CPU validation runs in fp32, as Reader reads: its accuracy is the one the export will show
        val_dtype = amp_dtype if device.type == "cuda" else None
        scores, examples = collect(model, batches, charset, device=device, amp_dtype=val_dtype)
        merged = Scores()
        parts = _gather((asdict(scores), examples), distributed, world)
        for part, _ in parts:
            merged.merge(Scores(**part))
        result = merged.summary()
        acc, ned = result["accuracy"], result["norm_ED"]
        gained = False
        if acc > counters.best_accuracy:
            counters.best_accuracy, gained = acc, True
            if main:
                ckpt.save_weights(model.state_dict(), out / "best_accuracy.pth")
        if ned > counters.best_norm_ED:
            counters.best_norm_ED, gained = ned, True
            if main:
                ckpt.save_weights(model.state_dict(), out / "best_norm_ED.pth")
        counters.evals_without_gain = 0 if gained else counters.evals_without_gain + 1
        counters.history.append(
            {
                "step": step,
                "train_loss": train_loss,
                "valid_loss": result["loss"],
                "accuracy": acc,
                "norm_ED": ned,
            }
        )
        if main:
            elapsed = time.time() - started
            text = (
                f"[{step}/{cfg.max_steps}] Train loss: {train_loss:0.5f}, Valid loss: {result['loss']:0.5f}, "
                f"Elapsed_time: {elapsed:0.5f}\n"
                f"{'Current_accuracy':17s}: {acc * 100:0.3f}, {'Current_norm_ED':17s}: {ned:0.4f}\n"
                f"{'Best_accuracy':17s}: {counters.best_accuracy * 100:0.3f}, "
                f"{'Best_norm_ED':17s}: {counters.best_norm_ED:0.4f}\n"
                f"CER: {result['cer']:0.4f}, mean confidence: {result['mean_confidence']:0.4f}, "
                f"per font: {', '.join(f'{f} {a:0.3f}' for f, a in result['per_font'].items()) or '-'}\n"
                f"{prediction_table(parts[0][1])}"
            )
            trainlog.write(text, echo=True)
            metrics = {
                "valid_loss": result["loss"],
                "accuracy": acc,
                "norm_ED": ned,
                "cer": result["cer"],
                "mean_confidence": result["mean_confidence"],
                "best_accuracy": counters.best_accuracy,
                "best_norm_ED": counters.best_norm_ED,
            }
            metrics.update({f"font_accuracy.{_metric_name(f)}": a for f, a in result["per_font"].items()})
            tracker.metrics(metrics, step)
            if tracker.active:
                from ocrtune.training.tracking import plot_history, prediction_image

                tracker.artifact(plot_history(counters.history, out / "curves.png"))
                first = [pos for _, pos, _ in val_plan[0]] if val_plan else []
                samples = [
                    (_image_bytes(val_source, pos), gt, pred, conf)
                    for pos, (gt, pred, conf) in zip(first, parts[0][1], strict=False)
                ]
                tracker.artifact(prediction_image(samples, out / "predictions.png"))
        patience = cfg.early_stop_patience
        return patience > 0 and counters.evals_without_gain >= patience

    # the loop
    ddp.train()
    criterion = torch.nn.CTCLoss(zero_infinity=True)
    started = time.time()
    loss_sum, loss_n = 0.0, 0
    status, last_saved = "finished", start_step
    bar = None
    if main and job.progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.max_steps, initial=start_step, unit="step", dynamic_ncols=True, file=sys.stderr)
    step = start_step
    tick, rate = time.perf_counter(), 0.0
    timed_samples, timed_seconds = 0, 0.0
    with iterate(loader) as batches, StopFlag() as stop:
        while step < cfg.max_steps:
            batch = next(batches)
            counters.dropped_samples += batch["dropped"]
            usable = batch["images"] is not None
            loss = None
            if usable:
                images = batch["images"].to(device, non_blocking=True)
                autocast = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
                with autocast:
                    logits = ddp(images)
                loss = ctc_loss(logits, batch["targets"].to(device), batch["lengths"].to(device), criterion)
            bad_loss = (not usable) or not bool(torch.isfinite(loss.detach()))
            flags = _sum_across(
                [
                    float(bad_loss),
                    float(stop.set),
                    0.0 if bad_loss else float(loss.detach()),
                    len(batch["labels"]),
                ],
                device,
                distributed,
            )
            skip = flags[0] > 0
            optimizer.zero_grad(set_to_none=True)
            if not skip:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                if use_scaler or torch.isfinite(grad_norm):
                    scaler.step(optimizer)  # with fp16 the scaler itself skips non-finite gradients
                    scaler.update()
                else:
                    skip = True
            elif usable:
                # every rank must take part in DDP's gradient all-reduce or none: no backward on a skipped step
                del loss
            if skip:
                counters.bad_steps += 1
                counters.bad_in_a_row += 1
                if counters.bad_in_a_row >= cfg.max_bad_steps:
                    raise UserError(
                        f"loss or gradients not finite in {counters.bad_in_a_row} steps in a row (step {step + 1}, "
                        f"{counters.bad_steps} skipped in all): lower the learning rate or check the data"
                    )
            else:
                counters.bad_in_a_row = 0
                loss_sum += flags[2] / world
                loss_n += 1
            scheduler.step()
            step += 1
            counters.samples += int(flags[3])

            took = max(time.perf_counter() - tick, 1e-9)  # this step alone: no validation, no checkpoint
            rate = flags[3] / took if rate == 0 else 0.9 * rate + 0.1 * flags[3] / took
            if step - start_step > WARMUP_STEPS_NOT_TIMED:
                timed_samples += int(flags[3])
                timed_seconds += took
            if bar is not None:
                bar.update(1)
                bar.set_postfix(
                    loss=f"{loss_sum / max(loss_n, 1):.4f}",
                    samples_s=f"{rate:.1f}",
                    skipped=counters.bad_steps,
                    refresh=False,
                )
            if main and tracker.active:
                tracker.metrics(
                    {"train_loss": flags[2] / world, "lr": scheduler.get_last_lr()[0], "samples_per_s": rate},
                    step,
                )

            early = False
            if step % cfg.val_interval == 0 or step == cfg.max_steps:
                train_loss = loss_sum / loss_n if loss_n else float("nan")
                loss_sum, loss_n = 0.0, 0
                early = validate(step, train_loss, started)
            preempted = flags[1] > 0
            if (
                step % cfg.checkpoint_interval == 0
                or step == cfg.max_steps
                or preempted
                or early
                or step == job.stop_at
            ):
                save_checkpoint(step)
                last_saved = step
            if preempted:
                status = "preempted"
                break
            if early:
                status = "early_stopped"
                if main:
                    trainlog.write(
                        f"early stop at step {step}: no gain in {cfg.early_stop_patience} validations",
                        echo=True,
                    )
                break
            if step == job.stop_at:
                status = "stopped"
                break
            tick = time.perf_counter()
    if bar is not None:
        bar.close()
    summary = {
        "is_main": main,
        "status": status,
        "step": step,
        "checkpoint": ckpt_path if last_saved == step else None,
        "best_accuracy": counters.best_accuracy,
        "best_norm_ED": counters.best_norm_ED,
        "bad_steps": counters.bad_steps,
        "dropped_samples": counters.dropped_samples,
        "samples": counters.samples,
        "seconds": time.time() - started,
        # steady training speed, all ranks together: the first steps (allocations, worker start) not timed
        "samples_per_s": timed_samples / timed_seconds if timed_seconds else float("nan"),
        "history": counters.history,
        "mlflow_run_id": tracker.run_id if tracker else None,
        "base_model": base_model,
    }
    if main and tracker is not None:
        tracker.metrics({"bad_steps": counters.bad_steps, "dropped_samples": counters.dropped_samples}, step)
        tracker.artifact(out / LOG_FILE)
        tracker.artifact(out / "best_accuracy.pth", "model")
        tracker.end("KILLED" if status == "preempted" else "FINISHED")
    if status == "preempted":
        raise Preempted(step, ckpt_path)
    return summary


def _metric_name(font: str) -> str:
    """MLflow metric names allow letters, digits, _ - . / and spaces."""
    return "".join(c if c.isalnum() or c in "_-. /" else "_" for c in font)


def _image_bytes(source: LmdbSource, pos: int) -> bytes:
    from ocrtune.data.lmdb import LmdbReader

    with LmdbReader(source.path) as reader:
        return reader.get(int(source.index[pos]))[0]
