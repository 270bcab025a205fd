"""The alert outbox and its coalescing: one row per server, kind and window, a repeat
folded in with its count, account alerts to every server with an alert channel, and what
was posted (or not) surviving a reopen of the database."""

from __future__ import annotations

from datetime import timedelta

from bot.jobs.alerts import Alerter, AlertKind, AlertPolicy, Repeats
from bot.store import Store
from tests.store.helpers import ManualClock, Stores

HOUR = timedelta(hours=1)
A, B, C = 1, 2, 3  # servers: A and B have an alert channel, C has none


async def _servers(stores: Stores, clock: ManualClock) -> Store:
    store = await stores.open(clock=clock)
    await store.guilds.set_alert_channel(A, 100)
    await store.guilds.set_alert_channel(B, 200)
    await store.guilds.set_paused(C, False)  # a server with settings but no alert channel
    return store


async def test_repeats_inside_the_window_fold_into_one_alert_with_a_count(stores: Stores):
    clock = ManualClock()
    store = await _servers(stores, clock)
    for n in range(5):
        clock.advance(minutes=10)
        await store.alerts.raise_alert("stuck", f"job {n}", guild_id=A, window=HOUR)
    alerts = await store.alerts.all()
    assert [(a.guild_id, a.kind, a.count, a.text) for a in alerts] == [(A, "stuck", 5, "job 4")]
    assert alerts[0].updated_at - alerts[0].opened_at == timedelta(minutes=40)

    # Past the window from its first fault: a new alert, counted from 1 again.
    clock.advance(minutes=25)
    await store.alerts.raise_alert("stuck", "job 5", guild_id=A, window=HOUR)
    assert [a.count for a in await store.alerts.all()] == [5, 1]
    # Another kind, or another server, is its own alert.
    await store.alerts.raise_alert("overage", "x", guild_id=A, window=HOUR)
    await store.alerts.raise_alert("stuck", "y", guild_id=B, window=HOUR)
    assert len(await store.alerts.all()) == 4


async def test_account_alerts_go_to_every_server_with_an_alert_channel(stores: Stores):
    store = await _servers(stores, ManualClock())
    ids = await store.alerts.raise_alert("drift", "moved", guild_id=None, window=HOUR, count=3)
    assert len(ids) == 2
    alerts = await store.alerts.all()
    assert sorted(a.guild_id for a in alerts) == [A, B] and {a.count for a in alerts} == {3}
    # A job of a server without an alert channel: nowhere to tell it, nothing kept.
    assert await store.alerts.raise_alert("stuck", "z", guild_id=C, window=HOUR) == []
    assert len(await store.alerts.all()) == 2


async def test_a_posted_alert_is_pending_again_only_when_its_count_grew(stores: Stores):
    clock = ManualClock()
    store = await _servers(stores, clock)
    [alert_id] = await store.alerts.raise_alert("stuck", "one", guild_id=A, window=HOUR)
    [pending] = await store.alerts.pending()
    assert pending.alert_channel_id == 100 and not pending.posted
    await store.alerts.mark_shown(alert_id, 1, channel_id=100, message_id=555)
    assert await store.alerts.pending() == []

    await store.alerts.raise_alert("stuck", "two", guild_id=A, window=HOUR)
    [again] = await store.alerts.pending()
    assert again.id == alert_id and again.count == 2 and again.shown_count == 1
    assert again.message_id == 555  # edited in place, never posted again
    await store.alerts.mark_shown(alert_id, 2, channel_id=None, message_id=None)
    [done] = await store.alerts.all()
    assert done.message_id == 555 and done.shown_count == 2


async def test_the_outbox_survives_a_reopen_sent_and_unsent_alike(stores: Stores):
    clock = ManualClock()
    store = await _servers(stores, clock)
    [sent] = await store.alerts.raise_alert("stuck", "sent", guild_id=A, window=HOUR)
    await store.alerts.mark_shown(sent, 1, channel_id=100, message_id=7)
    [unsent] = await store.alerts.raise_alert("overage", "unsent", guild_id=A, window=HOUR)
    await store.alerts.record_failure(unsent, next_attempt_at=clock() + timedelta(minutes=5))
    await store.close()

    reopened = await stores.open(clock=clock, balance_mc=None)
    assert [a.id for a in await reopened.alerts.pending()] == [unsent]  # all at a start
    assert await reopened.alerts.pending(due_by=clock()) == []  # waiting its next attempt
    clock.advance(minutes=6)
    assert [a.id for a in await reopened.alerts.pending(due_by=clock())] == [unsent]


async def test_turning_alerts_off_stops_new_ones_and_prune_keeps_what_is_pending(
    stores: Stores,
):
    clock = ManualClock()
    store = await _servers(stores, clock)
    [old] = await store.alerts.raise_alert("stuck", "old", guild_id=A, window=HOUR)
    await store.alerts.mark_shown(old, 1, channel_id=100, message_id=1)
    await store.alerts.raise_alert("drift", "waiting", guild_id=A, window=HOUR)
    settings = await store.guilds.set_alert_channel(A, None)
    assert settings.alert_channel_id is None
    assert await store.alerts.raise_alert("stuck", "new", guild_id=A, window=HOUR) == []
    clock.advance(days=100)
    assert await store.alerts.prune(before=clock() - timedelta(days=90)) == 1
    assert [a.text for a in await store.alerts.all()] == ["waiting"]


def test_errors_make_an_alert_only_once_they_repeat_inside_the_window():
    clock = ManualClock()
    repeats = Repeats(3, timedelta(minutes=5))
    repeats.note("astria", clock())
    clock.advance(minutes=1)
    repeats.note("astria", clock())
    assert repeats.due(clock()) == {}  # two: the bot's own retries cope
    clock.advance(minutes=10)
    repeats.note("astria", clock())
    assert repeats.due(clock()) == {}  # the first two fell out of the window
    for _ in range(3):
        clock.advance(seconds=10)
        repeats.note("astria", clock())
    assert repeats.due(clock()) == {"astria": 4}  # told with every one in the window
    assert repeats.due(clock()) == {}  # told once
    repeats.note("astria", clock())
    assert repeats.due(clock()) == {"astria": 1}  # still repeating: folded in next


async def test_a_low_balance_is_told_once_per_fall_below_each_servers_threshold(
    stores: Stores,
):
    clock = ManualClock()
    store = await _servers(stores, clock)
    await store.guilds.set_low_balance_alert(B, 100_000)  # A keeps the default, $5
    alerter = Alerter(store, clock, AlertPolicy(low_balance_mc=500_000))
    await alerter.balance_read(None, 900_000)
    assert await store.alerts.all() == []
    await alerter.balance_read(900_000, 400_000)  # below A's, above B's
    await alerter.balance_read(400_000, 300_000)  # still below A's: nothing new
    await alerter.balance_read(300_000, 50_000)  # below B's now
    told = [(a.guild_id, a.count) for a in await store.alerts.all()]
    assert told == [(A, 1), (B, 1)]
    [for_a] = [a for a in await store.alerts.all() if a.guild_id == A]
    assert "$4.00" in for_a.text and "$5.00" in for_a.text
    assert for_a.kind == AlertKind.LOW_BALANCE
