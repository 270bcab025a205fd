"""Errors of the store, at the grain a caller acts on; no sqlite3 exception leaves bot/store."""

from __future__ import annotations


class StoreError(Exception):
    """Anything the store could not do."""


class SchemaTooNew(StoreError):
    """The database was written by a newer bot: refuse to start rather than guess."""

    def __init__(self, found: int, known: int) -> None:
        super().__init__(
            f"this database was written by a newer version of the bot (schema {found}, "
            f"this version knows {known}): upgrade the bot or restore a backup"
        )
        self.found = found
        self.known = known


class MigrationFailed(StoreError):
    """A migration could not be applied; its transaction was rolled back."""


class StoreFault(StoreError):
    """A passing failure of the database (an I/O error, a lock held too long): the write
    did not happen, and the same write may succeed if tried again."""


class StoreBusy(StoreFault):
    """Another writer held the database for longer than the busy timeout."""


class IntegrityViolation(StoreError):
    """A constraint or trigger of the schema refused a write (a bug, or a race we lost)."""


class NotFound(StoreError):
    """No such row, or not one the caller may see."""


class NameTaken(StoreError):
    """The owner already has a live tune with this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"you already have a tune named {name!r}")
        self.name = name


class InvalidTransition(StoreError):
    """A job cannot move from its current state to the one asked for."""

    def __init__(self, what: str, current: str, wanted: str) -> None:
        super().__init__(f"{what} is {current} and cannot become {wanted}")
        self.current = current
        self.wanted = wanted


class TuneUnavailable(StoreError):
    """The tune is failed, cancelled, deleted or expired: it takes no more prompts."""

    def __init__(self, tune_id: int, state: str) -> None:
        super().__init__(f"tune {tune_id} is {state}: it can no longer make images")
        self.tune_id = tune_id
        self.state = state
