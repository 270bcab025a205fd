"""The result's components for 1 to 8 images stay within Discord's limits: 5 rows, 5
buttons a row, a select menu alone in its row with at most 25 options, unique custom_ids
of at most 100 characters; up to 4 images get buttons, more get one select menu."""

from __future__ import annotations

from typing import Any

import pytest

from bot.store import JobKind, JobRef
from bot.ui.buttons import result_view

BUTTON, SELECT = 2, 3
JOB = JobRef(JobKind.PROMPT, 2**53)  # a long id: the longest custom_ids


def rows_of(images: int, tool: str = "imagine") -> list[list[dict[str, Any]]]:
    view = result_view(JOB, images, tool)
    assert view is not None
    return [row["components"] for row in view.to_components()]


def check_limits(rows: list[list[dict[str, Any]]]) -> None:
    assert 1 <= len(rows) <= 5
    ids: list[str] = []
    for row in rows:
        kinds = {c["type"] for c in row}
        if SELECT in kinds:
            assert len(row) == 1, "a select menu takes a whole row"
            assert 1 <= len(row[0]["options"]) <= 25
        else:
            assert kinds == {BUTTON} and 1 <= len(row) <= 5
        ids.extend(c["custom_id"] for c in row)
    assert len(ids) == len(set(ids))
    assert all(len(i) <= 100 for i in ids)


@pytest.mark.parametrize("images", [1, 2, 3, 4, 5, 6, 7, 8])
async def test_every_count_fits_discord(images: int):
    check_limits(rows_of(images))


async def test_one_image_has_a_button_of_each_tool():
    rows = rows_of(1)
    assert [len(r) for r in rows] == [4, 1, 1, 1]
    assert [c["label"] for c in rows[0]] == ["Reroll", "Edit", "Details", "Delete"]
    assert [r[0]["custom_id"] for r in rows[1:]] == [
        f"job:upscale:{JOB.id}-0",
        f"job:vary-subtle:{JOB.id}-0",
        f"job:vary-strong:{JOB.id}-0",
    ]


async def test_four_images_are_three_rows_of_four_buttons():
    rows = rows_of(4)
    assert [len(r) for r in rows] == [4, 4, 4, 4]
    assert [c["label"] for c in rows[1]] == [f"Upscale {n}" for n in range(1, 5)]
    assert [c["custom_id"] for c in rows[3]] == [f"job:vary-strong:{JOB.id}-{i}" for i in range(4)]


@pytest.mark.parametrize("images", [5, 8])
async def test_more_than_four_images_get_one_select_menu(images: int):
    rows = rows_of(images)
    assert [len(r) for r in rows] == [4, 1]
    (menu,) = rows[1]
    assert menu["type"] == SELECT and menu["custom_id"] == f"job:tools:{JOB.id}"
    values = [o["value"] for o in menu["options"]]
    assert len(values) == 3 * images <= 25
    assert values[:3] == ["upscale:0", "vary-subtle:0", "vary-strong:0"]
    assert values[-1] == f"vary-strong:{images - 1}"


async def test_an_upscale_keeps_details_and_delete_only():
    rows = rows_of(1, "upscale")
    assert [[c["label"] for c in r] for r in rows] == [["Details", "Delete"]]
