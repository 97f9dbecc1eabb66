"""A served vault and Debian's Chromium, driven by Playwright.

The tests serve the app themselves (uvicorn in a thread, on a free port of
127.0.0.1), so they share the test's settable clock. Chromium comes from
Debian (``apt-get install chromium fonts-noto-cjk``); Playwright never
downloads a browser here. Without ``/usr/bin/chromium`` these tests are
skipped, saying so; ``.ci/run`` installs it first, so CI always runs them.

``VAULT_SCREENSHOTS=DIR`` saves the screenshots the README shows
(``make screenshots`` refreshes ``docs/screenshots``).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from api.app import create_app
from tests.api.conftest import PASSWORD, Clock
from vault.vault import Vault

CHROMIUM = os.environ.get("VAULT_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("VAULT_SCREENSHOTS", "")

if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
    if os.environ.get("VAULT_REQUIRE_BROWSER"):
        raise RuntimeError(f"VAULT_REQUIRE_BROWSER is set but there is no Chromium at {CHROMIUM}")
    pytest.skip(
        f"browser tests skipped: no Chromium at {CHROMIUM} "
        "(apt-get install chromium fonts-noto-cjk; .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need playwright")
axe_api = pytest.importorskip("axe_playwright_python.sync_playwright")


@pytest.fixture
def backend() -> str:
    """Browser tests run on SQLite; the pages' PostgreSQL runs are the TestClient tests."""
    return "sqlite"


class Served:
    def __init__(self, app: Any) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the served vault did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


@pytest.fixture
def served(api_vault: Vault, clock: Clock) -> Iterator[Served]:
    with Served(create_app(vault=api_vault, clock=clock)) as s:
        yield s


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def open_as(chromium: Any, served: Served) -> Iterator[Callable[..., Any]]:
    """A fresh browser context signed in as a user (through the sign-in form)."""
    contexts: list[Any] = []

    def _open(username: str | None = None, *, lang: str | None = None) -> Any:
        context = chromium.new_context(base_url=served.url, viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(15_000)
        page.goto("/login")
        if lang == "en":
            page.get_by_role("button", name="English").click()
        if username:
            page.fill("#f-username", username)
            page.fill("#f-password", PASSWORD)
            page.locator("form.card button[type=submit]").click()
            page.wait_for_url("**/ui")
        return page

    yield _open
    for context in contexts:
        context.close()


def axe_clean(page: Any) -> None:
    """No serious or critical axe-core violation on the page as it is now."""
    results = axe_api.Axe().run(page)
    bad = [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]
    assert not bad, f"axe-core on {page.url}:\n" + "\n".join(bad)


def shot(page: Any, name: str) -> None:
    """Save a screenshot for the README when VAULT_SCREENSHOTS names a directory."""
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)
