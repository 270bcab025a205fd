"""Run every benchmark (`make bench`), each in its own process, and sum up.

    .venv/bin/python -m bench [--quick] [--strict] [name ...]

Each benchmark prints its own table; this prints which goals were met. The exit status is
non-zero when a benchmark crashed, and with `--strict` also when a goal was not met.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence

from bench.common import GOALS_NOT_MET, Table, python_module

# In the order they run. A module `bench/<name>.py` with a `main()` that prints a table
# through `bench.common.report` is all a new benchmark needs.
BENCHMARKS: tuple[str, ...] = (
    "requests_per_job",
    "ledger",
    "restart",
    "processes",
    "photo_intake",
    "results_latency",
    "command_latency",
    "spend_chart",
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="name", help=", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="a smoke run of each")
    parser.add_argument(
        "--strict", action="store_true", help="exit non-zero when a goal is not met"
    )
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"no benchmark {', '.join(sorted(unknown))}; there are {BENCHMARKS}")
    chosen = args.names or list(BENCHMARKS)
    summary = Table(["benchmark", "seconds", "outcome"])
    crashed = unmet = False
    started = time.perf_counter()
    for name in chosen:
        print(f"\n### bench.{name}{' --quick' if args.quick else ''}", flush=True)
        began = time.perf_counter()
        flags = ["--quick"] if args.quick else []
        # Output goes straight to the terminal, so a long benchmark shows its progress.
        code = subprocess.call(python_module(f"bench.{name}", *flags))  # noqa: S603
        if code == 0:
            outcome = "every goal met"
        elif code == GOALS_NOT_MET:
            outcome = "some goals NOT met"
            unmet = True
        else:
            outcome = f"FAILED (exit {code})"
            crashed = True
        summary.add(name, f"{time.perf_counter() - began:.0f}", outcome)
    print(f"\n== Summary ({time.perf_counter() - started:.0f} s) ==")
    print(summary.render())
    if crashed:
        return 1
    return GOALS_NOT_MET if unmet and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
