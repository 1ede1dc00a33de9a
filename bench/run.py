"""`make bench`: run every benchmark and write JSON into bench/results/."""

from __future__ import annotations

import json
import sys

from bench import (
    analysis_bench,
    emulator_bench,
    investigation_bench,
    pages_bench,
    remediation_bench,
    watch_bench,
)
from bench.common import write_result


def main(argv: list[str]) -> int:
    only = set(argv)
    if not only or "emulator" in only:
        result = emulator_bench.run()
        path = write_result("emulator", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    if not only or "investigations" in only:
        result = investigation_bench.run(quick="--quick" in only)
        path = write_result("investigations", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    if not only or "remediation" in only:
        result = remediation_bench.run(quick="--quick" in only)
        path = write_result("remediation", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    if not only or "pages" in only:
        result = pages_bench.run(quick="--quick" in only)
        path = write_result("pages", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    if not only or "watch" in only:
        result = watch_bench.run(quick="--quick" in only)
        path = write_result("watch", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    if not only or "analysis" in only:
        result = analysis_bench.run(quick="--quick" in only)
        path = write_result("analysis", result)
        print(json.dumps(result, indent=2))
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
