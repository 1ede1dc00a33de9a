"""Shared helpers for benchmarks: result files, process memory sampling, wrk."""

from __future__ import annotations

import json
import platform
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).parent / "results"


def write_result(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "when": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {
            "cpus": psutil.cpu_count(),
            "python": platform.python_version(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        },
        **payload,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


@dataclass
class PeakMemory:
    """Samples a process's RSS in the background; `peak_mb` is the highest seen."""

    pid: int
    interval: float = 0.1
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        proc = psutil.Process(self.pid)
        while not self._stop.is_set():
            try:
                self.peak_bytes = max(self.peak_bytes, proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return round(self.peak_bytes / 2**20, 1)


def ensure_wrk() -> str | None:
    """wrk from Debian's packages, installed on first use when we are root; None if unavailable."""
    found = shutil.which("wrk")
    if found:
        return found
    try:
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"], check=True, capture_output=True, timeout=300
        )
    except (OSError, subprocess.SubprocessError):
        try:
            subprocess.run(
                ["apt-get", "update", "-qq"], check=True, capture_output=True, timeout=300
            )
            subprocess.run(
                ["apt-get", "install", "-y", "-qq", "wrk"],
                check=True,
                capture_output=True,
                timeout=300,
            )
        except (OSError, subprocess.SubprocessError):
            return None
    return shutil.which("wrk")


_WRK_RPS = re.compile(r"Requests/sec:\s+([\d.]+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s+(\d+)")
_WRK_TOTAL = re.compile(r"(\d+) requests in")
_WRK_LAT = re.compile(r"Latency\s+([\d.]+)(us|ms|s)")


def run_wrk(
    wrk: str, url: str, *, seconds: int, connections: int, threads: int, script: Path | None = None
) -> dict[str, Any]:
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    args.append(url)
    out = subprocess.run(
        args, check=True, capture_output=True, text=True, timeout=seconds + 60
    ).stdout
    rps = float(_WRK_RPS.search(out).group(1)) if _WRK_RPS.search(out) else 0.0
    total = int(_WRK_TOTAL.search(out).group(1)) if _WRK_TOTAL.search(out) else 0
    non2xx = int(_WRK_NON2XX.search(out).group(1)) if _WRK_NON2XX.search(out) else 0
    lat = _WRK_LAT.search(out)
    latency_ms = None
    if lat:
        value, unit = float(lat.group(1)), lat.group(2)
        latency_ms = value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    return {
        "requests_per_second": rps,
        "requests": total,
        "non_2xx": non2xx,
        "mean_latency_ms": latency_ms,
    }
