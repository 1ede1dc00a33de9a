"""`mailtrawl emulator generate` and `serve` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from mailtrawl.cli.main import app
from mailtrawl.emulator.testing import EmulatorProcess


def test_generate_writes_a_deterministic_tenant_and_ground_truth(tmp_path: Path) -> None:
    runner = CliRunner()
    args = [
        "emulator",
        "generate",
        "--users",
        "40",
        "--messages-per-mailbox",
        "10",
        "--campaigns",
        "2",
        "--seed",
        "5",
    ]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert first.exit_code == second.exit_code == 0, first.output
    summary = json.loads(first.output)
    assert summary["users"] == 40
    for name in ("tenant.json", "ground-truth.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    truth = json.loads((tmp_path / "a" / "ground-truth.json").read_text())
    assert len(truth["campaigns"]) == 2


def test_serve_over_plain_http_with_limits_set_at_start(tmp_path: Path) -> None:
    tenant = Path(__file__).parents[1] / "fixtures" / "tenant"
    with EmulatorProcess.start(
        tenant_dir=tenant,
        state_dir=tmp_path / "state",
        http=True,
        extra_args=[
            "--latency-ms",
            "5",
            "--mailbox-concurrency",
            "2",
            "--control-token",
            "ctl-token-for-test",
        ],
    ) as emu:
        assert emu.info["graph"].startswith("http://127.0.0.1:")
        assert emu.info["ca_bundle"] is None
        assert emu.info["control_token"] == "ctl-token-for-test"
        settings = emu.control("GET", "/settings")
        assert settings["limits"]["mailbox_concurrency"] == 2
        assert settings["faults"]["latency_ms"] == 5
        token = emu.token()
        response = httpx.get(
            f"{emu.graph}/users", headers={"Authorization": f"Bearer {token}"}, trust_env=False
        )
        assert response.status_code == 200
        wrong = httpx.get(
            f"{emu.info['control_url']}/info",
            headers={"Authorization": "Bearer nope"},
            trust_env=False,
        )
        assert wrong.status_code == 401


def test_serve_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    tenant = Path(__file__).parents[1] / "fixtures" / "tenant"
    result = CliRunner().invoke(
        app,
        [
            "emulator",
            "serve",
            "--tenant",
            str(tenant),
            "--host",
            "0.0.0.0",  # noqa: S104 - the address being refused
            "--state-dir",
            str(tmp_path),
        ],
    )
    assert result.exit_code != 0
    assert "loopback" in str(result.output) + str(result.exception)
