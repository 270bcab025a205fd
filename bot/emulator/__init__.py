"""A faithful local Astria API (aiohttp.web) for tests, demos and development.

Written from the API docs alone; it imports nothing else from `bot`.
"""

from bot.emulator.account import Charge
from bot.emulator.clock import Clock, ManualClock, SystemClock
from bot.emulator.config import EmulatorConfig
from bot.emulator.faults import Fault, FaultInjector, RequestRecord
from bot.emulator.server import Emulator

__all__ = [
    "Charge",
    "Clock",
    "Emulator",
    "EmulatorConfig",
    "Fault",
    "FaultInjector",
    "ManualClock",
    "RequestRecord",
    "SystemClock",
]
