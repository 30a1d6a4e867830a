"""The monitor in real headless Chromium (Debian's /usr/bin/chromium, driven by Playwright),
against the API in a thread and the ``cluster`` fixture's real workers."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.api.support import Tokens

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


# Module scope, not session: sync_playwright keeps an asyncio loop running in this thread
# while it is open, which breaks every later test that runs its own loop (MCP, Django).
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed (apt-get install -y chromium); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser: Any, api_url: str, tokens: Tokens) -> Iterator[Any]:
    """Alice's monitor, signed in through the one-time ?token= link."""
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    pg = context.new_page()
    pg.goto(f"{api_url}/tasks?token={tokens.alice}")
    assert pg.url == f"{api_url}/tasks", pg.url  # the token left the address bar
    pg.wait_for_function("window.__tl && window.__tl.ready", timeout=30_000)
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
