"""What every benchmark shares: the command line, tables with a ratio and a goal column,
statistics, and peak resident memory of a measured subprocess.

Numbers stand only against a baseline measured in the same run (2 noisy cores), so every
table carries a ratio, and every goal says plainly whether it was met.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The Astria key the benchmarks' emulators accept (a placeholder, never a real key).
KEY = "sd_bench_key_not_a_secret"

MB = 1024 * 1024

# A benchmark's exit status when it ran but missed a goal (1 stays "it crashed").
GOALS_NOT_MET = 3


# ---------------------------------------------------------------------- the command line


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    """`--quick` for a smoke run: the same code paths at a fraction of the size."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: smaller sizes, same code paths"
    )
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="where databases and photos go (default: a fresh temporary folder)",
    )
    return parser.parse_args(argv)


@contextmanager
def work_dir(given: Path | None, name: str) -> Iterator[Path]:
    """A folder for one run's files on a real disk: `given`, or a temporary one removed
    afterwards."""
    if given is not None:
        folder = given / name
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as temp:
        yield Path(temp)


# ---------------------------------------------------------------------- statistics


def ratio(value: float, baseline: float) -> float:
    """value / baseline; infinite when the baseline is 0 and the value is not."""
    if baseline == 0:
        return 0.0 if value == 0 else math.inf
    return value / baseline


def times(value: float, baseline: float) -> str:
    """The ratio as text: "×12.3"."""
    r = ratio(value, baseline)
    if math.isinf(r):
        return "×∞"
    return f"×{r:.3g}" if r < 100 else f"×{r:,.0f}"


def percentile(values: Sequence[float], pct: float) -> float:
    """The pct-th percentile (nearest rank); 50 is the median."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


def p99(values: Sequence[float]) -> float:
    return percentile(values, 99)


@dataclass
class Stopwatch:
    """Seconds since it was made, on the monotonic clock."""

    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        return time.perf_counter() - self.started


# ---------------------------------------------------------------------- memory
#
# Peak RSS comes from VmHWM in /proc, not from getrusage: on Linux a child's ru_maxrss
# keeps the high-water mark of the memory it was forked from (the kernel folds the old
# mm's peak in at exec), so a child of a 300 MB parent "peaks" at 300 MB even if it never
# uses more than 10. VmHWM belongs to the process's own address space, fresh at exec.


def vm_hwm(pid: int | str = "self") -> int | None:
    """Peak resident memory of a live process in bytes (None once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def own_peak_rss() -> int:
    """This process's peak resident memory, in bytes."""
    return vm_hwm() or 0


def current_rss() -> int:
    """This process's resident memory now, in bytes (Linux /proc)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Measured:
    """A subprocess that ran to its end: what it printed, how long, its peak memory."""

    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    polled_peak_rss: int  # VmHWM as last read while it ran (every 10 ms)

    def last_json(self) -> dict[str, Any]:
        """The last line of stdout that is a JSON object (how children report figures)."""
        for line in reversed(self.stdout.splitlines()):
            line = line.strip()
            if line.startswith("{"):
                loaded = json.loads(line)
                if isinstance(loaded, dict):
                    return loaded
        raise RuntimeError(f"the child printed no figures:\n{self.stdout}\n{self.stderr}")

    @property
    def peak_rss(self) -> int:
        """The child's peak RSS in bytes: its own last report (`"vm_hwm"` in its JSON line,
        see `child_figures`) or, failing that, the last reading taken while it ran."""
        try:
            reported = int(self.last_json().get("vm_hwm", 0))
        except (RuntimeError, ValueError):
            reported = 0
        return max(reported, self.polled_peak_rss)


def child_figures(figures: Mapping[str, Any]) -> str:
    """A child's report line: its figures and its own peak memory, as JSON."""
    return json.dumps({**figures, "vm_hwm": own_peak_rss()})


def run_measured(
    args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 600.0
) -> Measured:
    """Run `args` to its end and return its output, wall time and peak RSS.

    Output goes to files, so a chatty child never blocks on a full pipe while we poll.
    Blocking: call it through `asyncio.to_thread` when the child talks to servers on this
    process's event loop.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        watch = Stopwatch()
        child = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            list(args), stdout=out, stderr=err, env=None if env is None else dict(env)
        )
        deadline = time.monotonic() + timeout
        peak = 0
        while child.poll() is None:
            peak = max(peak, vm_hwm(child.pid) or 0)
            if time.monotonic() > deadline:
                child.kill()
                child.wait()
                break
            time.sleep(0.01)
        wall = watch.seconds()
        out.seek(0)
        err.seek(0)
        return Measured(
            returncode=child.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            wall_seconds=wall,
            polled_peak_rss=peak,
        )


class Sampler:
    """While running: the highest RSS seen and how late the event loop woke a task that
    sleeps `interval` (a loop stall shows as lateness: Discord heartbeats and every other
    coroutine wait that long too)."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_rss = current_rss()
        self.lateness: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self.peak_rss = max(self.peak_rss, current_rss())
            asked = loop.time()
            await asyncio.sleep(self.interval)
            self.lateness.append(max(0.0, loop.time() - asked - self.interval))

    def start(self) -> None:
        self.peak_rss = current_rss()
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.peak_rss = max(self.peak_rss, current_rss())

    @property
    def worst_stall(self) -> float:
        return max(self.lateness, default=0.0)


def python_module(module: str, *args: str) -> list[str]:
    """The command that runs `python -m module args` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def mb(size: float) -> str:
    return f"{size / MB:.1f} MB"


# ---------------------------------------------------------------------- reporting


@dataclass(frozen=True)
class Goal:
    """One goal of the issue and whether this run met it."""

    text: str
    met: bool
    measured: str = ""

    def line(self) -> str:
        mark = "yes" if self.met else "NO"
        detail = f" (measured: {self.measured})" if self.measured else ""
        return f"  goal met: {mark:<3}  {self.text}{detail}"


@dataclass
class Table:
    """A small fixed-width table: a header row, then rows of already formatted cells."""

    columns: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append([str(c) for c in cells])

    def render(self) -> str:
        widths = [len(c) for c in self.columns]
        for row in self.rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def line(cells: Sequence[str]) -> str:
            parts = [
                cell.ljust(width) if n == 0 else cell.rjust(width)
                for n, (cell, width) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  " + "  ".join(parts).rstrip()

        rule = "  " + "  ".join("-" * w for w in widths)
        return "\n".join([line(self.columns), rule, *(line(r) for r in self.rows)])


def report(
    title: str,
    tables: Sequence[Table],
    goals: Sequence[Goal],
    notes: Sequence[str] = (),
) -> int:
    """Print the benchmark's tables, notes and goals; the exit status: 0 when every goal
    was met, else GOALS_NOT_MET."""
    print(f"\n== {title} ==", flush=True)
    for table in tables:
        print(table.render())
        print()
    for note in notes:
        print(f"  {note}")
    if notes:
        print()
    for goal in goals:
        print(goal.line())
    print(flush=True)
    return 0 if all(goal.met for goal in goals) else GOALS_NOT_MET


def fmt(value: float, digits: int = 2) -> str:
    """A figure with `digits` decimals and thousands separators."""
    return f"{value:,.{digits}f}"


__all__ = [
    "GOALS_NOT_MET",
    "KEY",
    "MB",
    "Goal",
    "Measured",
    "Sampler",
    "Stopwatch",
    "Table",
    "child_figures",
    "current_rss",
    "fmt",
    "mb",
    "median",
    "own_peak_rss",
    "p99",
    "parse_args",
    "percentile",
    "python_module",
    "ratio",
    "report",
    "run_measured",
    "times",
    "vm_hwm",
    "work_dir",
]
