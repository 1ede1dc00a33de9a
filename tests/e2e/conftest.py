"""Browser tests: Debian's Chromium, driven by Playwright, against the real `mailtrawl serve`.

Each pytest worker starts one server (a subprocess on a free loopback port, with its own
MAILTRAWL_HOME and SQLite database, the job queue in-process) and one Chromium. Users are
created through the accounts service before the server starts: `ada` and `ann`
(administrators), `al` (analyst) and `vic` (viewer); an API token lets tests set things up
through the REST API, as an integration would. A mail configuration `contoso` points at the
worker's emulator.

When a test fails, a screenshot and the page's HTML are kept in tests/e2e/artifacts/.
Without Chromium (/usr/bin/chromium; `make test` installs it) the tests are skipped locally
and fail when CI=true.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest

from mailtrawl.accounts.models import Role
from mailtrawl.accounts.service import create_token, create_user
from mailtrawl.config import load_settings
from mailtrawl.emulator.testing import EmulatorProcess
from mailtrawl.storage.engine import make_engine, make_session_factory
from mailtrawl.storage.migrate import upgrade_to_head

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(__file__).parent / "artifacts"
PASSWORD = "correct horse battery staple"
USERS = {"ada": Role.ADMIN, "ann": Role.ADMIN, "al": Role.ANALYST, "vic": Role.VIEWER}
CONFIGURATION = "contoso"
SERVER_START_SECONDS = 60


def browser_unavailable(reason: str) -> NoReturn:
    """Skip locally, fail in CI: the rule for a browser that cannot be started."""
    message = (
        f"Chromium for the browser tests is unavailable: {reason}. "
        "`make test` installs it (apt-get install chromium)."
    )
    if os.environ.get("CI") == "true":
        pytest.fail(
            message + " CI=true: a missing browser is a failure, not a skip.", pytrace=False
        )
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running `mailtrawl serve` and what the tests need to reach it."""

    url: str
    home: Path
    token: str
    process: subprocess.Popen[bytes]
    log: Path
    emulator: EmulatorProcess
    extra: dict[str, Any] = field(default_factory=dict)

    def api(self) -> httpx.Client:
        """An API client authenticated with the administrators' automation token."""
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30.0,
            trust_env=False,
        )

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def configuration_body(
    emu: EmulatorProcess, *, name: str, secret: str | None = None
) -> dict[str, Any]:
    """A mail configuration reaching the emulator (a wrong `secret` makes its test fail)."""
    return {
        "name": name,
        "provider": "m365",
        "tenant": emu.tenant_id,
        "client_id": emu.info["client_id"],
        "credential": {"kind": "secret", "client_secret": secret or emu.info["client_secret"]},
        "cloud": "custom",
        "custom": {
            "authority_host": emu.authority_host,
            "graph_endpoint": emu.authority_host,
            "ca_bundle_pem": Path(str(emu.ca_bundle)).read_text(),
        },
        "authorized_domains": ["contoso.com"],
    }


def _prepare(home: Path, database_url: str) -> str:
    """Migrate the database, create the users and an admin API token; returns the token."""
    settings = load_settings(home=home, database_url=database_url)
    engine = make_engine(settings)
    try:
        upgrade_to_head(settings, engine=engine)
        with make_session_factory(engine).begin() as session:
            for username, role in USERS.items():
                create_user(session, username=username, password=PASSWORD, role=role)
            return create_token(session, name="e2e automation", role=Role.ADMIN).token
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def server(
    tmp_path_factory: pytest.TempPathFactory, emulator_session: EmulatorProcess
) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("e2e-home")
    database_url = f"sqlite:///{home / 'mailtrawl.db'}"
    token = _prepare(home, database_url)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILTRAWL_")}
    env |= {"MAILTRAWL_HOME": str(home), "MAILTRAWL_DATABASE_URL": database_url}
    log = home / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mailtrawl",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = Server(f"http://127.0.0.1:{port}", home, token, process, log, emulator_session)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mailtrawl serve exited:\n{running.log_tail()}")
            try:
                if httpx.get(running.url + "/api/v1/health", timeout=2, trust_env=False).is_success:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mailtrawl serve did not answer:\n{running.log_tail()}")
            time.sleep(0.1)
        with running.api() as api:
            created = api.post(
                "/mail-configurations",
                json=configuration_body(emulator_session, name=CONFIGURATION),
            )
            assert created.status_code == 201, created.text
        yield running
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(15)


# The browser ------------------------------------------------------------------------------------


# Module scope, not session: while Playwright's sync API is open it keeps an event loop
# running in this thread, and the asyncio tests that the same worker runs next would fail.
@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        browser_unavailable(f"{CHROMIUM} does not exist")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        browser_unavailable(f"the playwright package is not installed ({exc})")
    with sync_playwright() as playwright:
        try:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
            )
        except Exception as exc:  # the launcher reports any failure as a plain Error
            browser_unavailable(str(exc).splitlines()[0])
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """What a page said that a test may care about: console messages, errors, dialogs."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    failed_responses: list[str] = field(default_factory=list)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console + self.errors if "Content Security Policy" in m]


@pytest.fixture
def watched() -> Watched:
    return Watched()


@pytest.fixture(autouse=True)
def _no_watch_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop what a test left watching (a report's automatic investigation is active for 24 h).

    The server lives for the whole session and shares this worker's emulator: a watch left
    running would keep reading mailboxes while later tests count the emulator's requests.
    """
    yield
    if "server" not in request.fixturenames:
        return
    server: Server = request.getfixturevalue("server")
    with server.api() as api:
        listed = api.get("/investigations", params={"limit": 500})
        assert listed.status_code == 200, listed.text
        for item in listed.json()["items"]:
            if (item.get("watch") or {}).get("state") == "active":
                stopped = api.post(f"/investigations/{item['id']}/stop")
                assert stopped.status_code == 200, stopped.text


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _artifact_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", nodeid)[-150:]


@pytest.fixture
def page(
    browser: Any, server: Server, watched: Watched, request: pytest.FixtureRequest
) -> Iterator[Any]:
    """A fresh browser context (no cookies) on the test server; evidence kept on failure."""
    context = browser.new_context(base_url=server.url, viewport={"width": 1440, "height": 900})
    context.set_default_timeout(15_000)
    tab = context.new_page()
    tab.on("console", lambda message: watched.console.append(f"{message.type}: {message.text}"))
    tab.on("pageerror", lambda error: watched.errors.append(str(error)))
    tab.on(
        "response",
        lambda response: (
            response.status >= 400
            and watched.failed_responses.append(f"{response.status} {response.url}")
        ),
    )

    def on_dialog(dialog: Any) -> None:
        watched.dialogs.append(f"{dialog.type}: {dialog.message}")
        # Confirmations of our own buttons are accepted; anything else is dismissed.
        if dialog.type == "confirm":
            dialog.accept()
        else:
            dialog.dismiss()

    tab.on("dialog", on_dialog)
    try:
        yield tab
    finally:
        report = getattr(request.node, "report_call", None)
        if report is not None and report.failed:
            ARTIFACTS.mkdir(exist_ok=True)
            stem = ARTIFACTS / _artifact_name(request.node.nodeid)
            try:
                tab.screenshot(path=str(stem.with_suffix(".png")), full_page=True)
                stem.with_suffix(".html").write_text(tab.content())
                stem.with_suffix(".log").write_text(
                    "\n".join(
                        [
                            "# console",
                            *watched.console,
                            "# errors",
                            *watched.errors,
                            "# dialogs",
                            *watched.dialogs,
                            "# failed responses",
                            *watched.failed_responses,
                            "# server",
                            server.log_tail(),
                        ]
                    )
                )
            except Exception as exc:  # evidence is best effort; the failure is the news
                print(f"could not keep artifacts for {request.node.nodeid}: {exc}")
        context.close()


def sign_in(page: Any, username: str, password: str = PASSWORD, path: str = "/") -> None:
    """Sign in through the form, starting from `path` (which redirects to /login)."""
    page.goto(path)
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


def wait_finished(server: Server, investigation_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Poll the API until the investigation has finished; returns its view."""
    deadline = time.monotonic() + timeout
    with server.api() as api:
        while True:
            view = api.get(f"/investigations/{investigation_id}").json()
            if view["status"] in ("completed", "stopped", "failed"):
                return dict(view)
            if time.monotonic() > deadline:
                raise AssertionError(f"investigation still {view['status']}")
            time.sleep(0.2)
