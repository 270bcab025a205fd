"""A faithful local Astria API (aiohttp.web) for tests, demos and development.

Written from the API docs alone; it imports nothing else from `bot`.
"""

from bot.offline.emulator.account import Charge
from bot.offline.emulator.clock import Clock, ManualClock, SystemClock
from bot.offline.emulator.config import READINGS, EmulatorConfig, Reading
from bot.offline.emulator.faults import Fault, FaultInjector, RequestRecord
from bot.offline.emulator.server import Emulator

__all__ = [
    "READINGS",
    "Charge",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "FaultInjector",
    "ManualClock",
    "Reading",
    "RequestRecord",
    "SystemClock",
]
