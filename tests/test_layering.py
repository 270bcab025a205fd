"""The house rules that a grep can check: no job and no ledger row is made outside
`bot/actions` and `bot/store`, and the core does not import Discord."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Calls that create a job or write a ledger row.
WRITES = re.compile(
    r"\.(?:tunes|prompts)\.create\(|\.ledger\.(?:reserve|grant|adjust|refund|settle|release)\("
    r"|_reserve_or_roll_back\("
)
# The tracker settles and releases what the actions reserved (a job's end); that is the
# only other place money moves.
ALLOWED = ("bot/actions/", "bot/store/", "bot/jobs/tracker.py")


def product_files() -> list[Path]:
    return sorted([*(ROOT / "bot").rglob("*.py"), *(ROOT / "cogs").rglob("*.py")])


def test_no_job_or_ledger_row_is_made_outside_the_actions_and_the_store():
    offenders = []
    for path in product_files():
        relative = path.relative_to(ROOT).as_posix()
        if relative.startswith(ALLOWED):
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if WRITES.search(line):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert offenders == []


def test_the_grep_finds_a_job_made_by_hand():
    # The pattern itself must catch what it is for, or the test above proves nothing.
    assert WRITES.search("created = await svc.store.prompts.create(")
    assert WRITES.search("await self.bot.store.ledger.grant(")
    assert not WRITES.search("await store.prompts.get(prompt_id)")


def test_the_use_cases_know_no_discord():
    for path in (ROOT / "bot" / "actions").rglob("*.py"):
        text = path.read_text()
        assert not re.search(r"^\s*(?:import|from)\s+discord\b", text, re.MULTILINE), path


def test_the_charts_know_no_discord_no_store_and_no_pyplot():
    # bot/report draws from plain values: the actions read the data, the front attaches
    # the bytes. pyplot's global figure state is not thread-safe, and the charts are drawn
    # in worker threads, so only matplotlib's object-oriented API is used.
    for path in (ROOT / "bot" / "report").rglob("*.py"):
        text = path.read_text()
        imports = re.findall(r"^\s*(?:import|from)\s+([\w.]+)", text, re.MULTILINE)
        for module in imports:
            assert not module.startswith("discord"), (path, module)
            assert not module.startswith(("bot.actions", "bot.store", "bot.ui", "cogs")), path
            assert module != "matplotlib.pyplot", path
        assert not re.search(r"matplotlib\.pyplot|import\s+pyplot|pylab", text), path
