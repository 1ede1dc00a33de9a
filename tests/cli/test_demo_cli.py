"""`mailtrawl demo`: one command brings up the emulator, the app, a configuration and an admin."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port_pair() -> int:
    """A port whose successor is free too (the demo puts the emulator on port + 1)."""
    for _ in range(50):
        with socket.socket() as first:
            first.bind(("127.0.0.1", 0))
            port = int(first.getsockname()[1])
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row")


def _start(home: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mailtrawl",
            "demo",
            "--home",
            str(home),
            "--port",
            str(port),
            "--users",
            "30",
            "--messages-per-mailbox",
            "4",
            "--campaigns",
            "2",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("MAILTRAWL_")},
    )


def _banner(process: subprocess.Popen[str], timeout: float = 120) -> str:
    assert process.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "stop with Ctrl+C" in line:
            return "".join(lines)
    raise AssertionError("the demo printed no banner:\n" + "".join(lines))


def _wait_until_serving(base: str, timeout: float = 60) -> None:
    """The banner comes just before the server binds its port: wait for it to answer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{base}/api/v1/auth/me", trust_env=False, timeout=5)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)
    if process.stderr is not None:
        process.stderr.close()


def test_demo_serves_a_ready_configuration_and_an_admin(tmp_path: Path) -> None:
    home = tmp_path / "demo"
    port = _free_port_pair()
    process = _start(home, port)
    try:
        banner = _banner(process)
        match = re.search(r"sign in as (\S+) / (\S+)", banner)
        assert match, banner
        username, password = match.groups()
        base = f"http://127.0.0.1:{port}"
        assert f"{base}/" in banner
        _wait_until_serving(base)
        with httpx.Client(base_url=base, trust_env=False, timeout=30) as client:
            assert client.get("/api/v1/auth/me").status_code == 401
            login = client.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
            assert login.status_code == 200, login.text
            assert login.json()["role"] == "admin"
            csrf = login.json()["csrf_token"]
            [configuration] = client.get("/api/v1/mail-configurations").json()
            assert configuration["name"] == "Demo tenant (emulator)"
            test = client.post(
                f"/api/v1/mail-configurations/{configuration['id']}/test",
                headers={"X-CSRF-Token": csrf},
            )
            assert test.status_code == 200, test.text
            assert test.json()["last_test"]["ok"] is True
    finally:
        _stop(process)

    # Started again, it reuses the home: the same account signs in, one configuration.
    process = _start(home, port)
    try:
        banner = _banner(process)
        assert f"sign in as {username} / {password}" in banner
        _wait_until_serving(f"http://127.0.0.1:{port}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
            login = client.post(
                "/api/v1/auth/login", json={"username": username, "password": password}
            )
            assert login.status_code == 200
            assert len(client.get("/api/v1/mail-configurations").json()) == 1
    finally:
        _stop(process)
