"""The training loop, written to be read top to bottom: one process or one rank of a DDP job, same code.

``run`` builds a ``Trainer``; ``Trainer.setup`` makes the model, optimizer, schedule, loaders and restores a
checkpoint; ``Trainer.fit`` loops. Each step (``train_step``): a width-bucketed batch of Reader-preprocessed
crops, CTC loss (log_softmax, (T, B, C), as DTRB and EasyOCR's trainer), a skipped step when the loss or the
gradients are not finite, grad clipping, the optimizer and the LR schedule. Every ``val_interval`` steps:
validation on all ranks (sharded), a DTRB-style log_train.txt, best-by-accuracy and best-by-norm_ED weights.
Every ``checkpoint_interval`` steps and on SIGTERM: a checkpoint from which ``--resume`` continues bit for bit
as if never stopped. What only rank 0 tells goes through ``Reporter``, a no-op on the other ranks.
"""

from __future__ import annotations

import signal
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from ocrtune.charsets import load_charset
from ocrtune.config import TrainConfig
from ocrtune.errors import UserError
from ocrtune.model.surgery import build_model, freeze
from ocrtune.training import checkpoint as ckpt
from ocrtune.training import distributed as launch
from ocrtune.training.checkpoint import Checkpointer
from ocrtune.training.distributed import amp_setup, gather, pick_device, sum_across
from ocrtune.training.loader import BucketBatchSampler, LmdbDataset, LmdbSource, iterate, make_loader
from ocrtune.training.loss import ctc_criterion, ctc_loss
from ocrtune.training.optim import make_optimizer, make_scheduler, param_groups
from ocrtune.training.report import Reporter
from ocrtune.training.state import TrainState
from ocrtune.training.tracking import end_active_run
from ocrtune.training.validation import Validator

PREEMPTED_EXIT = 75  # EX_TEMPFAIL: stopped by SIGTERM after saving a checkpoint; rerun with --resume
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


@dataclass(frozen=True)
class StepResult:
    """One training step as every rank agrees on it (the figures are summed over ranks)."""

    loss: float  # mean loss over the ranks whose loss was finite (0 where none was)
    skipped: bool  # no optimizer step: a loss or the gradients were not finite, or the batch was unusable
    stop_requested: bool  # SIGTERM reached some rank: checkpoint and stop after this step
    samples: int  # samples in this step, all ranks together


# ---- the pieces ---------------------------------------------------------------------------------
def build(cfg: TrainConfig, charset: str, cache_dir: str | None) -> tuple[torch.nn.Module, dict]:
    """The model from the pretrained start (or its fallback), head surgery to ``charset``, freezing."""
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


class LossWindow:
    """Mean training loss of the steps taken since the last validation (skipped steps left out)."""

    def __init__(self):
        self.total, self.n = 0.0, 0

    def add(self, loss: float) -> None:
        self.total += loss
        self.n += 1

    @property
    def mean(self) -> float:
        return self.total / max(self.n, 1)

    def take(self) -> float:
        """The mean (NaN when no step counted), and a fresh window."""
        value = self.total / self.n if self.n else float("nan")
        self.total, self.n = 0.0, 0
        return value


class Speed:
    """Samples per second: a moving rate for the progress bar, and the steady mean the summary reports.

    Each step is timed alone (loading its batch included, validation and checkpoints not); the first
    ``WARMUP_STEPS_NOT_TIMED`` steps of a process (allocations, worker start) stay out of the mean."""

    def __init__(self):
        self.rate, self.samples, self.seconds = 0.0, 0, 0.0

    def add(self, samples: int, seconds: float, timed: bool) -> None:
        seconds = max(seconds, 1e-9)
        self.rate = samples / seconds if self.rate == 0 else 0.9 * self.rate + 0.1 * samples / seconds
        if timed:
            self.samples += samples
            self.seconds += seconds

    @property
    def steady(self) -> float:
        return self.samples / self.seconds if self.seconds else float("nan")


# ---- the trainer -------------------------------------------------------------------------------------
class Trainer:
    """One rank of a training run: ``setup()`` builds everything, ``fit()`` trains to the end."""

    def __init__(self, cfg: TrainConfig, job: Job, env: launch.DistEnv, device: torch.device, threads: int):
        self.cfg, self.job, self.env, self.device, self.threads = cfg, job, env, device, threads
        self.out = Path(job.out)
        self.checkpointer = Checkpointer(job.checkpoint_dir or str(self.out), writes=env.is_main)
        self.reporter = Reporter(env.is_main, self.out, cfg, job.progress)
        self.stop = StopFlag()

    def setup(self) -> None:
        """Data, model, optimizer, schedule, scaler; the checkpoint restored; DDP, loader, validator, header."""
        cfg, env = self.cfg, self.env
        charset, train_sources, val_source = self._sources()
        saved = self._saved_state(charset)
        model, report = build(cfg, charset, self.job.cache_dir)
        base_model = (saved or {}).get("base_model") or report["base"]  # a resumed run keeps its first start
        self.state = self._train_state(model, charset, base_model)
        if saved is not None:
            for note in self.state.load_state_dict(saved, env.rank, env.world_size, self.checkpointer.path):
                self.reporter.note(note)
        self.start_step = self.state.step
        self.ddp = self._wrap(model)
        self.loader = self._loader(train_sources, charset)
        self.validator = Validator(
            val_source,
            charset,
            cfg.batch_size,
            env.rank,
            env.world_size,
            self.device,
            self.amp_dtype,
            self.reporter.outputs,  # best weights: written where rank 0 writes, nowhere on the others
            cfg.early_stop_patience,
        )
        self.criterion = ctc_criterion()
        self._start_reporting(report, [*train_sources, val_source], resumed=saved is not None)

    def _train_state(self, model: torch.nn.Module, charset: str, base_model: str) -> TrainState:
        """The model on its device with its optimizer, LR schedule and (fp16) gradient scaler, at step 0."""
        cfg = self.cfg
        model.to(self.device)
        self.amp_dtype, self.use_scaler = amp_setup(cfg.amp, self.device)
        groups = param_groups(model, cfg)
        self.params = [p for g in groups for p in g["params"]]
        optimizer = make_optimizer(cfg, groups)
        scaler = torch.amp.GradScaler("cuda", enabled=self.use_scaler)
        scheduler = make_scheduler(cfg, optimizer)
        return TrainState(model, optimizer, scheduler, scaler, charset, base_model, asdict(cfg))

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around the model when there are several ranks (it broadcasts rank 0's weights), else the model."""
        if not self.env.distributed:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    def _loader(self, sources: list[LmdbSource], charset: str) -> torch.utils.data.DataLoader:
        """This rank's batches from the restored step on (the sampler is a pure function of seed and step)."""
        cfg, env = self.cfg, self.env
        widths = [s.widths for s in sources]
        self.state.sampler = BucketBatchSampler(
            widths, cfg.batch_size, self.job.ratios, env.rank, env.world_size, cfg.seed, self.start_step
        )
        dataset = LmdbDataset(sources, self.job.augment)
        return make_loader(dataset, self.state.sampler, charset, cfg.workers, self.device.type == "cuda")

    def _sources(self) -> tuple[str, list[LmdbSource], LmdbSource]:
        """Every rank scans the LMDBs (cheap), so a bad one fails everywhere with the same message."""
        cfg, job = self.cfg, self.job
        charset = load_charset(cfg.charset)
        if job.ratios and len(job.ratios) != len(job.train):
            raise UserError(f"--ratio has {len(job.ratios)} values for {len(job.train)} training LMDBs")
        train = [
            LmdbSource(p, charset, cfg.max_label_length, corrupt_threshold=cfg.corrupt_threshold)
            for p in job.train
        ]
        val = LmdbSource(job.val, charset, cfg.max_label_length, corrupt_threshold=cfg.corrupt_threshold)
        return charset, train, val

    def _saved_state(self, charset: str) -> dict | None:
        """The checkpoint to resume from, None for a fresh start; one that is there without --resume is an error."""
        path = self.checkpointer.path
        if not self.checkpointer.exists():
            return None
        if not self.job.resume:
            raise UserError(f"{path} exists: pass --resume to continue that run, or choose another --out")
        saved = self.checkpointer.load()
        if saved["charset"] != charset:
            raise UserError(f"{path} was trained with another charset than '{self.cfg.charset}'")
        return saved

    def _start_reporting(self, model_report: dict, sources: list[LmdbSource], resumed: bool) -> None:
        path, job = self.checkpointer.path, self.job
        resume_line = None
        if resumed:
            resume_line = f"resumed from {path} at step {self.start_step}"
        elif job.resume:
            resume_line = f"note: --resume but no checkpoint at {path}: starting fresh"
        self.reporter.start(
            world=self.env.world_size,
            device=self.device,
            threads=self.threads,
            amp_dtype=self.amp_dtype,
            model_report=model_report,
            sources=sources,
            resume_line=resume_line,
            train=job.train,
            val=job.val,
            ratios=job.ratios,
            base_model=self.state.base_model,
            mlflow=job.mlflow,
            run_id=self.state.mlflow_run_id,
            start_step=self.start_step,
        )

    # ---- one step ------------------------------------------------------------------------------------
    def train_step(self, batch: dict) -> StepResult:
        """Forward, loss, and an optimizer step unless some rank's loss or this step's gradients are not
        finite; the schedule steps either way. Every rank takes the same branch (the flags are all-reduced),
        since DDP's gradient all-reduce needs all ranks or none."""
        counters = self.state.counters
        counters.dropped_samples += batch["dropped"]
        loss = self._loss(batch)
        bad = loss is None or not bool(torch.isfinite(loss.detach()))
        any_bad, stop, loss_sum, samples = sum_across(
            [float(bad), float(self.stop.set), 0.0 if bad else float(loss.detach()), len(batch["labels"])],
            self.device,
            self.env.distributed,
        )
        self.state.optimizer.zero_grad(set_to_none=True)
        skipped = any_bad > 0 or not self._backward_and_step(loss)
        del loss  # no backward on a skipped step: free its graph now
        if skipped:
            counters.bad_steps += 1
            counters.bad_in_a_row += 1
            if counters.bad_in_a_row >= self.cfg.max_bad_steps:
                raise UserError(
                    f"loss or gradients not finite in {counters.bad_in_a_row} steps in a row "
                    f"(step {self.state.step + 1}, {counters.bad_steps} skipped in all): "
                    "lower the learning rate or check the data"
                )
        else:
            counters.bad_in_a_row = 0
        self.state.scheduler.step()
        counters.samples += int(samples)
        return StepResult(loss_sum / self.env.world_size, skipped, stop > 0, int(samples))

    def _loss(self, batch: dict) -> torch.Tensor | None:
        """The CTC loss of ``batch``; None when none of its images could be decoded."""
        if batch["images"] is None:
            return None
        images = batch["images"].to(self.device, non_blocking=True)
        autocast = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            logits = self.ddp(images)
        targets, lengths = batch["targets"].to(self.device), batch["lengths"].to(self.device)
        return ctc_loss(logits, targets, lengths, self.criterion)

    def _backward_and_step(self, loss: torch.Tensor) -> bool:
        """Backward, unscale, clip, step; False when the gradients are not finite (no step taken)."""
        scaler, optimizer = self.state.scaler, self.state.optimizer
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.cfg.grad_clip)
        if self.use_scaler or torch.isfinite(grad_norm):
            scaler.step(optimizer)  # with fp16 the scaler itself skips non-finite gradients
            scaler.update()
            return True
        return False

    # ---- around the steps ------------------------------------------------------------------------------
    def validate(self, train_loss: float, started: float) -> bool:
        """Score on all ranks, report on rank 0; True when early stopping says stop."""
        result = self.validator(self.state.model, self.state.counters, self.state.step, train_loss)
        self.reporter.validated(result, self.state.counters, time.time() - started, self.validator.crops)
        return result.stop

    def save_checkpoint(self) -> str:
        """Every rank's RNG states gathered (a collective), the whole state written by rank 0."""
        rngs = gather(ckpt.rng_state(), self.env.distributed, self.env.world_size)
        self.state.mlflow_run_id = self.reporter.run_id
        return self.checkpointer.save(self.state, rngs)

    def _stop_reason(self, step: StepResult, early: bool) -> str | None:
        if step.stop_requested:
            return "preempted"
        if early:
            return "early_stopped"
        if self.state.step == self.job.stop_at:
            return "stopped"
        return None

    # ---- the loop ------------------------------------------------------------------------------------
    def fit(self) -> dict:
        """Train from the restored step to ``max_steps`` (or a stop); returns the summary.

        Raises ``Preempted`` after the checkpoint when SIGTERM arrived."""
        cfg, state, counters = self.cfg, self.state, self.state.counters
        self.ddp.train()
        started = time.time()
        status, last_saved = "finished", state.step
        window, speed = LossWindow(), Speed()
        tick = time.perf_counter()
        with iterate(self.loader) as batches, self.stop:
            while state.step < cfg.max_steps:
                result = self.train_step(next(batches))
                state.step += 1
                if not result.skipped:
                    window.add(result.loss)
                took = time.perf_counter() - tick  # this step alone: no validation, no checkpoint
                speed.add(result.samples, took, timed=state.step - self.start_step > WARMUP_STEPS_NOT_TIMED)
                lr = state.scheduler.get_last_lr()[0]
                self.reporter.step(state.step, result.loss, window.mean, speed.rate, counters.bad_steps, lr)

                early = False
                if state.step % cfg.val_interval == 0 or state.step == cfg.max_steps:
                    early = self.validate(window.take(), started)
                reason = self._stop_reason(result, early)
                if state.step % cfg.checkpoint_interval == 0 or state.step == cfg.max_steps or reason:
                    self.save_checkpoint()
                    last_saved = state.step
                if reason == "early_stopped":
                    self.reporter.note(
                        f"early stop at step {state.step}: no gain in {cfg.early_stop_patience} validations"
                    )
                if reason:
                    status = reason
                    break
                tick = time.perf_counter()
        summary = self.summary(status, last_saved, time.time() - started, speed.steady)
        self.reporter.finish(status, counters, state.step, summary)
        if status == "preempted":
            raise Preempted(state.step, self.checkpointer.path)
        return summary

    def summary(self, status: str, last_saved: int, seconds: float, samples_per_s: float) -> dict:
        """What ``run`` returns and train_result.json holds (plus ``final_step``, the same as ``step``)."""
        c = self.state.counters
        return {
            "is_main": self.env.is_main,
            "status": status,
            "step": self.state.step,
            "final_step": self.state.step,
            "checkpoint": self.checkpointer.path if last_saved == self.state.step else None,
            "best_accuracy": c.best_accuracy,
            "best_norm_ED": c.best_norm_ED,
            "bad_steps": c.bad_steps,
            "dropped_samples": c.dropped_samples,
            "samples": c.samples,
            "seconds": seconds,
            # steady training speed, all ranks together: the first steps (allocations, worker start) not timed
            "samples_per_s": samples_per_s,
            "history": c.history,
            "mlflow_run_id": self.reporter.run_id,
            "base_model": self.state.base_model,
        }


# ---- the run -----------------------------------------------------------------------------------------
def run(cfg: TrainConfig, job: Job) -> dict:
    """Train under whatever launcher started this process; returns rank 0's summary (others: theirs)."""
    dist_env = launch.detect()
    threads = launch.set_threads(dist_env)
    device = pick_device(job.device, dist_env)
    launch.init(dist_env, device.type)
    try:
        trainer = Trainer(cfg, job, dist_env, device, threads)
        trainer.setup()
        return trainer.fit()
    except BaseException:
        end_active_run("FAILED")  # a failed run is not left "running"
        raise
    finally:
        launch.shutdown()
