"""``--backend trdg``: the real trdg 1.8.0, run in its own virtualenv, for side-by-side comparisons.

trdg 1.8.0 needs Pillow<10 (it calls ``ImageFont.getsize``) and pip<24.1 to install, and its pins clash with
easyocr's, so it never enters ocrtune's environment: it gets a venv of its own (created on first use, cached)
and a small runner script executed by that venv's python. We call trdg's own per-image generator
(``FakeTextDataGenerator.generate``, what its CLI calls) with our plan's text and font for each sample, so
the font/word split holds for trdg too, and trdg writes the image files itself.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from ocrtune.errors import UserError
from ocrtune.files import DISK_FULL, cache_dir

TRDG_REQUIREMENTS = ["trdg==1.8.0", "pillow<10"]
VENV_ENV = "OCRTUNE_TRDG_VENV"
STAMP = ".ocrtune-complete"

# Runs inside the trdg venv. Job: JSON file argv[1] with items [[split_dir, index, text, font, seed_key]].
RUNNER = r"""
import json, os, random, sys, time
from multiprocessing import Pool
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):  # trdg prints a notice about its optional handwriting model
    from trdg.data_generator import FakeTextDataGenerator

JOB = json.load(open(sys.argv[1], encoding="utf-8"))

def one(item):
    out_dir, index, text, font, key = item
    random.seed(key)  # trdg draws skew etc. from the global random module
    with contextlib.redirect_stdout(io.StringIO()):
        FakeTextDataGenerator.generate(
            index, text, font, out_dir, JOB["height"], JOB["ext"], JOB["skew"], JOB["skew"] > 0, 0, False,
            JOB["background_type"], 0, 0, False, 2, -1, 1, "#282828", 0, 1.0, 0, tuple(JOB["margins"]),
            False, False, False, "")
    src = os.path.join(out_dir, "%d.%s" % (index, JOB["ext"]))
    if not os.path.exists(src):
        return out_dir, index, "trdg produced no image"
    if JOB["rename"]:
        os.replace(src, os.path.join(out_dir, "image_%06d.%s" % (index, JOB["ext"])))
    return out_dir, index, None

def chunked(items, n):
    for i in range(0, len(items), n):
        yield items[i:i + n]

def run_chunk(chunk):
    try:
        return [one(it) for it in chunk]
    except OSError as exc:
        return [("", -1, "OSError %d %s" % (exc.errno or 0, exc))]

if __name__ == "__main__":
    items = JOB["items"]
    t0 = time.perf_counter()
    chunks = list(chunked(items, 32))
    results = Pool(JOB["workers"]).imap(run_chunk, chunks) if JOB["workers"] > 1 else map(run_chunk, chunks)
    for res in results:
        print(json.dumps(res), flush=True)
    print(json.dumps({"elapsed": time.perf_counter() - t0}), flush=True)
"""


def default_venv() -> Path:
    """``$OCRTUNE_TRDG_VENV``, else ``${XDG_CACHE_HOME:-~/.cache}/ocrtune/trdg-venv``."""
    return cache_dir("trdg-venv", VENV_ENV)


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _works(python: Path) -> bool:
    if not python.is_file():
        return False
    probe = "import importlib.metadata as m, PIL; assert m.version('trdg') == '1.8.0'; assert int(PIL.__version__.split('.')[0]) < 10"
    return subprocess.run([str(python), "-c", probe], capture_output=True).returncode == 0


def ensure_trdg(venv: str | Path | None = None, echo: Callable[[str], None] | None = None) -> Path:
    """The python of a venv holding trdg 1.8.0 (created on first use: venv, pip<24.1, trdg, Pillow<10).

    A venv cannot be moved once built, so it is built in place and marked complete at the end; an
    interrupted build has no mark and is rebuilt from scratch next time.
    """
    venv = Path(venv) if venv else default_venv()
    python = _venv_python(venv)
    if (venv / STAMP).is_file() and _works(python):
        return python
    say = echo or (lambda m: print(m, file=sys.stderr))
    say(f"creating the trdg 1.8.0 environment in {venv} (once)")
    if venv.exists():
        shutil.rmtree(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", None) or sys.executable
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    for cmd in ([base, "-m", "venv", str(venv)], [*pip, "pip<24.1"], [*pip, *TRDG_REQUIREMENTS]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            last = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise UserError(f"cannot set up trdg in {venv}: `{' '.join(cmd[-2:])}` failed: {last}")
    if not _works(python):
        shutil.rmtree(venv, ignore_errors=True)
        raise UserError(f"trdg 1.8.0 did not install into {venv}")
    (venv / STAMP).write_text("trdg==1.8.0 pillow<10\n")
    return python


def run_trdg(
    items: list[tuple[str, int, str, str, str]],
    height: int,
    skew: float,
    margins: tuple[int, int, int, int] = (0, 0, 0, 0),
    workers: int = 1,
    ext: str = "jpg",
    rename: bool = True,
    python: Path | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[tuple[str, int], str], float]:
    """Render (out_dir, index, text, font path, seed key) items with trdg: plain white background, no blur.

    Returns ({(out_dir, index): error} for images trdg did not make, seconds trdg spent rendering and writing).
    """
    python = python or ensure_trdg()
    job = {
        "items": [list(it) for it in items],
        "height": height,
        "skew": int(round(skew)),  # trdg's skew is an int (rnd.randint(-k, k))
        "margins": list(margins),
        "workers": workers,
        "ext": ext,
        "rename": rename,
        "background_type": 1,  # plain white, as the reference workflow used
    }
    with tempfile.TemporaryDirectory(prefix="ocrtune-trdg-") as d:
        job_file = Path(d) / "job.json"
        job_file.write_text(json.dumps(job, ensure_ascii=False), "utf-8")
        script = Path(d) / "runner.py"
        script.write_text(RUNNER, "utf-8")
        errors = open(Path(d) / "stderr.txt", "w+", encoding="utf-8")  # noqa: SIM115 - closed below
        proc = subprocess.Popen(  # own session: Ctrl-C reaches us, and we stop its whole process group
            [str(python), str(script), str(job_file)],
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
        failed: dict[tuple[str, int], str] = {}
        elapsed = 0.0
        # the runner prints (out_dir, index, error) triples per chunk, then its own elapsed time
        try:
            for line in proc.stdout:
                msg = json.loads(line)
                if isinstance(msg, dict):
                    elapsed = msg["elapsed"]
                    continue
                for out_dir, index, err in msg:
                    if index == -1:
                        _stop(proc)
                        if int(err.split()[1]) in DISK_FULL:
                            raise UserError(f"disk full while trdg was writing images ({err})")
                        raise UserError(f"trdg failed: {err}")
                    if err:
                        failed[(out_dir, index)] = err
                if on_progress:
                    on_progress(len(msg))
            rc = proc.wait()
        except BaseException:
            _stop(proc)
            errors.close()
            raise
        errors.seek(0)
        tail = (errors.read().strip().splitlines() or ["(no output)"])[-1]
        errors.close()
        if rc != 0:
            raise UserError(f"trdg exited with code {rc}: {tail}")
    return failed, elapsed


def _stop(proc: subprocess.Popen) -> None:
    """Kill the runner and its pool workers (its process group), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def render_with_trdg(plan, tmp: Path, cfg, font_paths: dict[str, str], progress: bool) -> Counter:
    """The trdg backend of ``ocrtune data generate``: same plan, trdg's rendering, our layout."""
    if cfg.image_format != "jpg" and cfg.image_format != "png":
        raise UserError(f"unknown image format {cfg.image_format}")
    python = ensure_trdg()
    items = []
    for split, samples in plan.samples.items():
        for s in samples:
            key = f"ocrtune:{cfg.seed}:{split}:{s.index}"
            items.append((str(tmp / split / "images"), s.index, s.text, font_paths[s.font], key))
    bar = tqdm(
        total=len(items), desc="rendering (trdg)", unit="img", disable=not progress, dynamic_ncols=True
    )
    try:
        failed, _ = run_trdg(
            items,
            cfg.height,
            cfg.skew,
            tuple(cfg.margins),
            cfg.workers,
            cfg.image_format,
            True,
            python,
            bar.update,
        )
    finally:
        bar.close()
    return Counter({(Path(out_dir).parent.name, index): 1 for out_dir, index in failed})
