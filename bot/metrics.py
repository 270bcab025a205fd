"""The bot's Prometheus metrics, on an endpoint of their own (off unless METRICS_PORT is set).

Each `BotMetrics` has its own registry (never prometheus_client's global one), so a test
can run several in one process. Requests are counted where they happen, by aiohttp trace
hooks on the Astria session and on discord.py's (`http_trace`), so every request is
counted once, retries included, whoever sends it. Jobs by kind and state, the queue and
the ledger's totals are read from the store when Prometheus scrapes, so they are never
stale and survive restarts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.store import Store

log = logging.getLogger(__name__)

# From a second (a callback, an idle channel) to an hour (a channel at its rate limit, a
# restart in between).
LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
UNKNOWN_ROUTE = "(other)"
ROUTE_KEY = "route"  # in an aiohttp request's trace_request_ctx


class BotMetrics:
    """Every metric the bot exports, on one registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Gauge(
            "astria_bot_jobs", "Jobs in the store by kind and state", ["kind", "state"], registry=r
        )
        self.queue_depth = Gauge(
            "astria_bot_queue_depth", "Jobs waiting in the local queue (queued)", registry=r
        )
        self.ledger = Gauge(
            "astria_bot_ledger_mc",
            "Sum of the ledger's rows by kind, in millicents (reserve, settle, release, grant, "
            "adjust: refunds and corrections; cost: what Astria said settled jobs cost)",
            ["kind"],
            registry=r,
        )
        self.astria_requests = Counter(
            "astria_bot_astria_requests",
            "HTTP requests to Astria by method, route template and status "
            "(error: no answer; timeout: none in time)",
            ["method", "route", "status"],
            registry=r,
        )
        self.astria_retries = Counter(
            "astria_bot_astria_retries",
            "Astria requests sent again (a retry, a re-post, a lookup of a lost create)",
            ["route"],
            registry=r,
        )
        self.discord_requests = Counter(
            "astria_bot_discord_requests",
            "HTTP requests to Discord by method and status",
            ["method", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "astria_bot_rate_limited",
            "429 answers received, by side (astria, discord)",
            ["side"],
            registry=r,
        )
        self.delivery_latency = Histogram(
            "astria_bot_delivery_latency_seconds",
            "From a job's end seen at Astria to its result posted in Discord",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        for side in ("astria", "discord"):
            self.rate_limited.labels(side=side)  # shown as 0 before the first

    # ------------------------------------------------------------------ hooks

    def retried(self, route: str) -> None:
        self.astria_retries.labels(route=route).inc()

    def delivered(self, kind: str, seconds: float) -> None:
        self.delivery_latency.labels(kind=kind).observe(max(seconds, 0.0))

    def astria_trace(self) -> aiohttp.TraceConfig:
        """For the Astria session: each request by the route template the client names in
        `trace_request_ctx` (ids never become labels). aiohttp itself sends a GET or a
        DELETE once more when a kept-alive connection drops it, inside one request as the
        client sees it: each such send is counted too (as an `error` and a retry), so the
        counts are what reached Astria."""
        trace = aiohttp.TraceConfig()

        async def start(
            _: aiohttp.ClientSession, ctx: SimpleNamespace, __: aiohttp.TraceRequestStartParams
        ) -> None:
            ctx.sends = 0

        async def sent(
            _: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            __: aiohttp.TraceRequestHeadersSentParams,
        ) -> None:
            ctx.sends = getattr(ctx, "sends", 0) + 1

        async def end(
            _: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            self._astria(ctx, params.method, str(params.response.status))

        async def failed(
            _: aiohttp.ClientSession,
            ctx: SimpleNamespace,
            params: aiohttp.TraceRequestExceptionParams,
        ) -> None:
            timeout = isinstance(params.exception, TimeoutError)
            self._astria(ctx, params.method, "timeout" if timeout else "error")

        trace.on_request_start.append(start)
        trace.on_request_headers_sent.append(sent)
        trace.on_request_end.append(end)
        trace.on_request_exception.append(failed)
        return trace

    def _astria(self, ctx: SimpleNamespace, method: str, status: str) -> None:
        given = getattr(ctx, "trace_request_ctx", None)
        route = given.get(ROUTE_KEY, UNKNOWN_ROUTE) if isinstance(given, dict) else UNKNOWN_ROUTE
        for _ in range(getattr(ctx, "sends", 1) - 1):  # aiohttp's own silent re-sends
            self.astria_requests.labels(method=method, route=route, status="error").inc()
            self.retried(route)
        self.astria_requests.labels(method=method, route=route, status=status).inc()
        if status == "429":
            self.rate_limited.labels(side="astria").inc()

    def discord_trace(self) -> aiohttp.TraceConfig:
        """For discord.py's session (`http_trace`): discord.py waits out its own 429s and
        logs them; this counts them, and every request by status."""
        trace = aiohttp.TraceConfig()

        async def end(
            _: aiohttp.ClientSession, __: SimpleNamespace, params: aiohttp.TraceRequestEndParams
        ) -> None:
            status = str(params.response.status)
            self.discord_requests.labels(method=params.method, status=status).inc()
            if status == "429":
                self.rate_limited.labels(side="discord").inc()

        async def failed(
            _: aiohttp.ClientSession,
            __: SimpleNamespace,
            params: aiohttp.TraceRequestExceptionParams,
        ) -> None:
            self.discord_requests.labels(method=params.method, status="error").inc()

        trace.on_request_end.append(end)
        trace.on_request_exception.append(failed)
        return trace

    # ------------------------------------------------------------------ the store

    async def read_store(self, store: Store) -> None:
        """Set the gauges from the database (at each scrape)."""
        self.jobs.clear()
        queued = 0
        for kind, counts in (
            ("tune", await store.tunes.count_by_state()),
            ("prompt", await store.prompts.count_by_state()),
        ):
            for state, n in counts.items():
                self.jobs.labels(kind=kind, state=state).set(n)
            queued += counts.get("queued", 0)
        self.queue_depth.set(queued)
        self.ledger.clear()
        for kind, total in (await store.ledger.totals_by_kind()).items():
            self.ledger.labels(kind=kind).set(total)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class MetricsAddress:
    host: str
    port: int

    @classmethod
    def from_settings(cls, settings: Settings) -> MetricsAddress | None:
        """Where to serve, or None when METRICS_PORT is not set (the settings refused a
        public host without METRICS_ALLOW_PUBLIC)."""
        if settings.metrics_port is None:
            return None
        return cls(settings.metrics_host, settings.metrics_port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"


class MetricsServer:
    """`GET /metrics` on its own small aiohttp server, in the bot's event loop."""

    def __init__(self, metrics: BotMetrics, address: MetricsAddress) -> None:
        self.metrics = metrics
        self.address = address
        self.store: Store | None = None  # set once the store is open
        self.port = address.port
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._scrape)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        try:
            await site.start()
        except OSError:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.port = int(self._runner.addresses[0][1])  # the port bound (0 asks for any)
        log.info("metrics at %s", self.url)

    @property
    def url(self) -> str:
        return MetricsAddress(self.address.host, self.port).url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _scrape(self, _: web.Request) -> web.Response:
        if self.store is not None:
            try:
                await self.metrics.read_store(self.store)
            except Exception:
                # The counters are still worth serving; the gauges keep their last values.
                log.warning("metrics: could not read the store", exc_info=True)
        body = self.metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
