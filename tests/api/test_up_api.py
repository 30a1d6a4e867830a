"""`taskledger up` on the embedded default also runs the API, makes a local admin token on
first start and prints the monitor link with it; the link signs a browser in."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.support import free_port
from tests.support.services import ROOT


def test_up_starts_the_api_and_prints_a_one_click_monitor_link(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKLEDGER_")}
    env.update(TASKLEDGER_HOME=str(tmp_path / "home"), TASKLEDGER_API_PORT=str(port))
    env["COLUMNS"] = "300"
    out = tmp_path / "up.out"
    with open(out, "w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "up"],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        link = None
        deadline = time.monotonic() + 180
        while link is None and time.monotonic() < deadline and proc.poll() is None:
            found = re.search(r"Task monitor: (http://\S+)", out.read_text())
            link = found.group(1) if found else None
            time.sleep(0.3)
        assert link, out.read_text()[-3000:]
        assert link.startswith(f"http://127.0.0.1:{port}/tasks?token=tl_")
        with httpx.Client() as browser:
            page = browser.get(link, follow_redirects=True)
            assert page.status_code == 200 and "local (admin)" in page.text
            assert httpx.get(f"http://127.0.0.1:{port}/readyz").json()["status"] == "ok"
        token_file = tmp_path / "home" / "api-admin-token"
        assert token_file.stat().st_mode & 0o777 == 0o600
        logs = "".join(
            p.read_text(errors="replace") for p in (tmp_path / "home" / "logs").glob("*")
        )
        assert link.split("token=")[1] not in logs  # the token is in no log file
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
