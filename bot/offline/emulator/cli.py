"""`astria-bot emulator`: run the Astria emulator in real time until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from typing import TextIO

from bot.offline.emulator.clock import SystemClock
from bot.offline.emulator.config import EmulatorConfig
from bot.offline.emulator.server import Emulator


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = EmulatorConfig()
    parser = argparse.ArgumentParser(
        prog="astria-bot emulator",
        description="A local Astria API on 127.0.0.1 for development and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=8765, help="port (0 = any free port)")
    parser.add_argument("--key", default=defaults.api_key, help="the API key clients must send")
    parser.add_argument(
        "--idempotency", action="store_true", help="turn on Astria's account-level idempotency"
    )
    parser.add_argument("--balance-mc", type=int, default=defaults.balance_mc)
    parser.add_argument("--train-seconds", type=float, default=defaults.train_seconds)
    parser.add_argument("--prompt-seconds", type=float, default=defaults.prompt_seconds)
    parser.add_argument("--foreign-tunes", type=int, default=defaults.foreign_tunes)
    parser.add_argument("--foreign-prompts", type=int, default=defaults.foreign_prompts)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument(
        "--failed-prompt-cost",
        choices=("zeroed", "kept"),
        default=defaults.failed_prompt_cost,
        help="what a failed prompt reports as its cost_mc (undocumented at Astria)",
    )
    parser.add_argument(
        "--no-refund-failed-prompts",
        dest="refund_failed_prompts",
        action="store_false",
        help="keep a failed prompt's cost instead of returning it to the balance",
    )
    parser.add_argument(
        "--low-balance-status",
        type=int,
        choices=(402, 422),
        default=defaults.low_balance_status,
        help="how a create the balance cannot pay for is refused (undocumented at Astria)",
    )
    parser.add_argument(
        "--replay-status",
        type=int,
        choices=(200, 201),
        default=defaults.replay_status,
        help="the status of an idempotent replay of a tune create",
    )
    parser.add_argument(
        "--prompt-response",
        choices=("object", "array", "mixed"),
        default=defaults.prompt_response,
        help="how POST prompts answers: an object, a one-element array, or by turns",
    )
    parser.add_argument(
        "--pack-billing",
        choices=("create", "finish"),
        default=defaults.pack_billing,
        help="when a pack run is charged: all at the POST, or each prompt as it ends",
    )
    parser.add_argument(
        "--auto-extend",
        action="store_true",
        help="extend tunes' storage by 30 days (charged) when their expires_at passes",
    )
    parser.add_argument("--auto-extend-price-mc", type=int, default=defaults.auto_extend_price_mc)
    return parser.parse_args(argv)


def build_config(args: argparse.Namespace) -> EmulatorConfig:
    return EmulatorConfig(
        api_key=args.key,
        idempotency=args.idempotency,
        balance_mc=args.balance_mc,
        train_seconds=args.train_seconds,
        prompt_seconds=args.prompt_seconds,
        foreign_tunes=args.foreign_tunes,
        foreign_prompts=args.foreign_prompts,
        seed=args.seed,
        failed_prompt_cost=args.failed_prompt_cost,
        refund_failed_prompts=args.refund_failed_prompts,
        low_balance_status=args.low_balance_status,
        replay_status=args.replay_status,
        prompt_response=args.prompt_response,
        pack_billing=args.pack_billing,
        auto_extend=args.auto_extend,
        auto_extend_price_mc=args.auto_extend_price_mc,
    )


async def serve(
    config: EmulatorConfig,
    host: str,
    port: int,
    stop: asyncio.Event | None = None,
    out: TextIO = sys.stdout,
) -> None:
    """Run until stop is set, or until SIGINT/SIGTERM when no event is given."""
    emulator = Emulator(config, SystemClock())
    base_url = await emulator.start(host, port)
    print(f"Astria emulator listening on {base_url}", file=out)
    print(f"API key: {config.api_key}", file=out)
    print("Press Ctrl-C to stop.", file=out, flush=True)
    handled: list[signal.Signals] = []
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Not every platform lets the loop own signals; Ctrl-C still ends asyncio.run.
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
                handled.append(signum)
    try:
        await stop.wait()
    finally:
        loop = asyncio.get_running_loop()
        for signum in handled:
            loop.remove_signal_handler(signum)
        await emulator.stop()
        print("Astria emulator stopped.", file=out, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(build_config(args), args.host, args.port))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        pass
    return 0
