"""`python -m bot.offline.emulator` runs the emulator's command line."""

from bot.offline.emulator.cli import main

raise SystemExit(main())
