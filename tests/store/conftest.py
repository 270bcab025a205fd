"""Fixtures for the store's tests: stores on real files, closed at the end of each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.store.helpers import Stores


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Stores]:
    opened = Stores(tmp_path)
    yield opened
    await opened.close_all()


@pytest.fixture
async def store(stores: Stores) -> Store:
    return await stores.open()
