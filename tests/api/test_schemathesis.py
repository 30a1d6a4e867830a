"""schemathesis against /openapi.json: every operation, generated valid and invalid input,
stateful sequences; no 5xx and every response matching its documented schema.

Runs the ``schemathesis`` CLI against the live API (real Postgres, Redis and workers)
and prints its summary: operations and cases run, failures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.api.support import Tokens

pytestmark = pytest.mark.usefixtures("cluster", "clean")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
    ]
)


def test_schemathesis_finds_no_5xx_and_no_schema_violation(
    api_url: str, tokens: Tokens, tmp_path: Path
) -> None:
    schema = httpx.get(f"{api_url}/openapi.json").json()
    operations = sum(
        1
        for methods in schema["paths"].values()
        for m in methods
        if m in ("get", "post", "patch", "delete")
    )
    for seed in (7, 8):
        data, output = _run(api_url, tokens.admin, tmp_path / f"report-{seed}.json", seed)
        assert data["failures"] == [], output[-8000:]  # an API failure is never retried
        if not data["errors"]:
            break
        # schemathesis's own generator crashed (seen once: a hypothesis filter inside its
        # coverage phase); that says nothing about the API, so run once more, reported.
        print(f"schemathesis engine errors with seed {seed}, running again: {data['errors']}")
    ops, cases = data["operations"], data["test_cases"]
    print(
        f"schemathesis: {ops['tested']} of {operations} operations tested "
        f"(the SSE stream has its own tests), cases {cases}, "
        f"failures {len(data['failures'])}, errors {len(data['errors'])}"
    )
    assert data["exit_code"] == 0, output[-8000:]
    assert ops["tested"] == operations - 1 and ops["errored"] == 0
    assert data["failures"] == [] and data["errors"] == []
    assert all(p["status"] in ("success", "skip") for p in data["phases"].values())
    assert data["phases"]["stateful"]["status"] == "success"


def _run(url: str, token: str, report: Path, seed: int) -> tuple[dict, str]:
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(cli),
            "run",
            f"{url}/openapi.json",
            "--checks",
            CHECKS,
            "--header",
            f"Authorization: Bearer {token}",  # admin: cleanup too
            "--max-examples",
            os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
            "--phases",
            "examples,coverage,fuzzing,stateful",
            "--exclude-path",
            "/api/tasks/stream",  # an endless event stream; tested on its own
            "--workers",
            "2",
            "--request-timeout",
            "30",
            "--seed",
            str(seed),
            "--generation-database",
            "none",  # no .schemathesis/ folder in the repository
            "--no-color",
            "--report",
            "json",
            "--report-json-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=1500,
    )
    output = result.stdout + result.stderr
    print(output[-2500:])
    assert report.exists(), output[-8000:]
    return json.loads(report.read_text()), output
