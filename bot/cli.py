"""`astria-bot`: the command line (run, sync, check, invite, demo, emulator)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from bot.config import ConfigError, Settings, load_settings
from bot.logs import LogSetup, configure_logging


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="astria-bot",
        description="A Discord bot that trains Astria fine-tunes on members' photos.",
    )
    debug_help = "on a failed start, show the traceback under the one-line reason"
    parser.add_argument("--debug", action="store_true", help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser("run", help="run the bot (reads .env)")
    # Also after `run`; SUPPRESS keeps `astria-bot --debug run` from being reset to False.
    run.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub.add_parser("check", help="check the settings, the Astria key and the database path")
    demo = sub.add_parser("demo", help="the offline demo: a local Astria, one tune, one prompt")
    demo.add_argument("--output", default="demo-output", help="where images and the log go")
    sub.add_parser(
        "emulator", help="serve the local Astria emulator (see `astria-bot emulator --help`)"
    )
    sync = sub.add_parser("sync", help="register the slash commands with Discord (once)")
    sync.add_argument(
        "--guild",
        type=int,
        help="only in this server, at once (for testing; removes the global set)",
    )
    sync.add_argument(
        "--clear", action="store_true", help="remove the commands (globally, or --guild's)"
    )
    invite = sub.add_parser("invite", help="print the link that adds the bot to a server")
    invite.add_argument("--application-id", type=int, help="default: read from DISCORD_TOKEN")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["emulator"]:
        # The emulator has its own options and imports nothing of the bot's.
        from bot.offline.emulator.cli import main as emulator_main

        return emulator_main(args_list[1:])
    args = _parser().parse_args(args_list)
    if args.command == "demo":
        from bot.offline.demo import run_demo

        configure_logging(LogSetup())
        return asyncio.run(run_demo(args.output))
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    # LOG_LEVEL, LOG_FORMAT and LOG_FILE apply from here; a settings error above is one
    # line on stderr, with nothing to log yet.
    try:
        configure_logging(LogSetup.from_settings(settings))
    except OSError as exc:
        print(
            f"LOG_FILE: cannot write {settings.log_file} ({exc.strerror}); "
            "give a file in a writable folder, like LOG_FILE=data/bot.log",
            file=sys.stderr,
        )
        return 2
    if args.command == "invite":
        return _invite(settings, args.application_id)
    if args.command == "check":
        from bot.check import run_check

        return asyncio.run(run_check(settings))
    if args.command == "sync":
        try:
            settings.require("discord_token")
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return 2
        from bot.runner import sync_commands

        return asyncio.run(sync_commands(settings, args.guild, sys.stdout, clear_them=args.clear))
    # run
    try:
        settings.require("discord_token", "astria_api_key")
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    from bot.runner import run_bot

    return asyncio.run(run_bot(settings, debug=args.debug))


def _invite(settings: Settings, application_id: int | None) -> int:
    from bot.invite import application_id_from_token, invite_url

    if application_id is None and settings.discord_token is not None:
        application_id = application_id_from_token(settings.discord_token.get_secret_value())
    if application_id is None:
        where = "Discord developer portal > your app > General Information"
        if settings.discord_token is None:
            print(f"Give --application-id ({where}), or set DISCORD_TOKEN.", file=sys.stderr)
        else:
            print(
                "DISCORD_TOKEN does not start with an application id, so it is not a bot "
                "token: copy it again (Bot > Reset Token), or give --application-id "
                f"({where}).",
                file=sys.stderr,
            )
        return 2
    print(invite_url(application_id))
    return 0
