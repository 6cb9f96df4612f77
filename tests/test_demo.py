"""`finetune-lab demo --no-serve` runs end to end on a fresh home and shows an improving job."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx


def test_demo_no_serve_on_fresh_home(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FINETUNE_LAB_")}
    env["FINETUNE_LAB_HOME"] = str(tmp_path)
    env["COLUMNS"] = "200"
    done = subprocess.run(
        [sys.executable, "-m", "finetune_lab", "demo", "--no-serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert (tmp_path / "finetune-lab.db").exists()
    key = re.search(r"flk_[A-Za-z0-9_-]{43}", out)
    assert key, out
    improvement = re.search(r"Overall CER improvement: ([\d.]+)%", out)
    assert improvement and float(improvement.group(1)) > 50, out
    url = re.search(r"http://127\.0\.0\.1:(\d+)", out)
    assert url, out
    # --no-serve: the server is gone when the command returns.
    try:
        httpx.get(f"http://127.0.0.1:{url.group(1)}/healthz", timeout=2)
    except httpx.TransportError:
        pass
    else:
        raise AssertionError("the demo server is still answering after --no-serve")
