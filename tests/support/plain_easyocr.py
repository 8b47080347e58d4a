"""Read a gt.txt split with plain easyocr in a fresh process, ocrtune hidden: what a user's environment sees."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = """
import json, sys
sys.modules["ocrtune"] = None  # a user's environment: easyocr only
import easyocr
d, name, gt = sys.argv[1], sys.argv[2], sys.argv[3]
reader = easyocr.Reader(["en"], gpu=False, recog_network=name, model_storage_directory=d,
                        user_network_directory=d, download_enabled=False, detector=False, verbose=False)
root = gt.rsplit("/", 1)[0]
rows = [line.rstrip("\\n").split("\\t", 1) for line in open(gt, encoding="utf-8") if line.strip()]
hits = sum((reader.recognize(root + "/" + p) or [(0, "", 0)])[0][1] == label for p, label in rows)
print(json.dumps({"n": len(rows), "accuracy": hits / len(rows)}))
"""


def read_split(model_dir: str | Path, gt: str | Path, name: str = "custom") -> dict:
    """``{"n", "accuracy"}`` of the export in ``model_dir`` (recog_network ``name``) on the split's gt.txt."""
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(model_dir), name, str(gt)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
