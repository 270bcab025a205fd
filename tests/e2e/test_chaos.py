"""The short chaos run (`make chaos` is the full one): 30 jobs from 6 members on a paid
branch, while the emulator injects 500s, 429s, 504s after creating, dropped connections and
latency, and the bot is killed with SIGKILL once while jobs are in flight.

Nothing accepted is lost, nothing is made twice at Astria or posted twice in Discord, and
the ledger equals the emulator's charges and its balance change, to the millicent. On
PostgreSQL the same with two bot processes (a shard and a server each), each killed once:
the other, or the restarted one, takes the dead one's jobs over once their leases run out.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pytest
from pydantic import SecretStr

from bot.offline.chaos import ChaosPlan, ChaosReport, main, run_chaos
from bot.offline.emulator import READINGS
from tests.pg import SKIP_REASON, TEST_DATABASE_URL, Schemas

SEED = 7


# Under every named reading of what Astria leaves undocumented (docs/emulator.md): where
# Astria keeps a failed prompt's cost it is the operator's, never a member's.
@pytest.mark.parametrize("reading", sorted(READINGS))
async def test_short_chaos_run_loses_nothing_and_doubles_nothing(
    tmp_path: Path, reading: str
) -> None:
    await _passes(dataclasses.replace(ChaosPlan.short(SEED), reading=reading), tmp_path)


async def test_short_chaos_run_with_store_faults_loses_nothing_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """The bot's own database also fails some of its writes (an I/O error at commit):
    retried, or left where the tracker takes the job up again (issue 13); and the bot is
    killed once more while a member's form photos are being read: no photo is left. The
    bot logs JSON here: every line of its logs must be one JSON object."""
    plan = dataclasses.replace(
        ChaosPlan.short(SEED), store_faults=True, intake_kill=True, log_format="json"
    )
    report = await _passes(plan, tmp_path)
    assert report.store_faults > 0
    assert report.kills[0].number == 0  # the intake kill came first


@pytest.mark.postgres
@pytest.mark.skipif(TEST_DATABASE_URL is None, reason=SKIP_REASON)
async def test_short_two_process_chaos_run_on_postgres_loses_nothing_and_doubles_nothing(
    tmp_path: Path,
) -> None:
    """Two bot processes on one fresh schema, members in four channels of two servers (a
    server on each process's shard); two kills, one of each process: every job the dead
    one held is taken over, and the figures are the one-process run's."""
    schemas = Schemas()
    try:
        url = await schemas.url()
        plan = dataclasses.replace(ChaosPlan.short(SEED), procs=2, kills=2)
        report = await _passes(plan, tmp_path, database_url=url)
    finally:
        await schemas.drop_all()
    assert sorted(k.slot for k in report.kills) == [0, 1]
    held = [k for k in report.kills if k.held]
    assert held, "no killed process held a job"
    assert all(k.takeover_all is not None for k in held)
    assert report.takeovers


def test_the_two_process_run_refuses_without_postgres(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("TEST_DATABASE_URL", "sqlite:///nowhere")
    with pytest.raises(SystemExit) as exited:
        main(["--short", "--procs", "2"])
    assert exited.value.code == 2
    assert "--procs 2 needs PostgreSQL" in capsys.readouterr().err


async def _passes(
    plan: ChaosPlan, tmp_path: Path, *, database_url: SecretStr | None = None
) -> ChaosReport:
    out = io.StringIO()
    report = await run_chaos(plan, tmp_path / "chaos", out, database_url=database_url)
    figures = out.getvalue()
    print(figures)  # shown by pytest when the test fails

    assert report.accepted > 0, figures
    assert not report.failures, figures
    assert report.drained, figures
    assert len(report.lost) == 0, figures
    assert report.duplicates_at_astria == 0, figures
    assert report.double_posts == 0, figures
    assert report.ledger_difference_mc == 0, figures
    assert report.settled_mc > 0, figures  # a paid branch: 0 == 0 would prove nothing
    assert report.failed_charged == 0, figures
    assert len(report.kills) == plan.kills + plan.intake_kill, figures
    assert report.killed_mid_flight, figures
    assert report.orphan_photos == 0, figures
    assert report.problems() == [], figures
    # The metrics scraped after the drain equal the emulator's and the fake's own counts
    # since the bot's last start, route by route (problems() names any difference).
    assert report.metrics_requests > 0 or plan.procs > 1, figures  # one process's counters
    assert report.secrets_in_logs == 0, figures
    return report
