"""Fixtures for the store's tests: stores on real files, or (with TEST_DATABASE_URL) on
PostgreSQL schemas, closed and dropped at the end of each test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.store import Store
from tests.pg import BACKENDS
from tests.store.helpers import Stores


@pytest.fixture(params=BACKENDS)
async def stores(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stores]:
    opened = Stores(tmp_path, request.param)
    yield opened
    await opened.close_all()


@pytest.fixture
async def store(stores: Stores) -> Store:
    return await stores.open()
