"""`python -m bot.emulator` runs the emulator's command line."""

from bot.emulator.cli import main

raise SystemExit(main())
