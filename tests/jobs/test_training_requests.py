"""What each profile asks Astria for, read back from the emulator: Flux tunes carry the
training preset, FaceID prompts the guidance FaceID wants, SD1.5 keeps Astria's defaults."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config import FluxPreset
from bot.jobs import TrackerConfig
from bot.store import TuneRecord
from tests.jobs.conftest import Rig, settings_for

FLUX_BASE = 1504944
SD15_BASE = 690204


async def submitted(rig: Rig, tune: TuneRecord) -> dict[str, Any]:
    """The tune as the emulator holds it once the tracker has posted it."""
    await rig.tracker.poll_once()
    [held] = rig.emulator.tunes_with_title(tune.title)
    return held


async def test_flux_tune_trains_with_astrias_portrait_preset_by_default(rig: Rig):
    tune = await rig.tune(owner=1, profile="flux-lora", branch="flux1")
    held = await submitted(rig, tune)
    assert held["preset"] == "flux-lora-portrait"
    assert held["model_type"] == "lora" and held["base_tune_id"] == FLUX_BASE


@pytest.mark.parametrize(
    ("setting", "sent"), [("flux-lora-focus", "flux-lora-focus"), ("none", None)]
)
async def test_flux_preset_follows_the_setting(rig: Rig, setting: FluxPreset, sent: str | None):
    profiles = TrackerConfig.from_settings(settings_for(flux_training_preset=setting)).profiles
    tracker = rig.new_tracker(profiles=profiles)
    try:
        tune = await rig.tune(owner=1, profile="flux-lora", branch="flux1")
        await tracker.poll_once()
        [held] = rig.emulator.tunes_with_title(tune.title)
        assert held["preset"] == sent
    finally:
        await tracker.stop()


async def test_sd15_checkpoint_and_fast_tunes_keep_astrias_defaults(rig: Rig):
    checkpoint = await rig.tune(owner=1, profile="sd15-checkpoint", branch="sd15")
    mock = await rig.tune(owner=2, profile="flux-lora", branch="fast")
    await rig.tracker.poll_once()
    [held_checkpoint] = rig.emulator.tunes_with_title(checkpoint.title)
    [held_mock] = rig.emulator.tunes_with_title(mock.title)
    assert held_checkpoint["preset"] is None and held_checkpoint["model_type"] is None
    assert held_mock["preset"] is None  # the mock trains nothing; no preset to choose


async def test_faceid_prompt_carries_cfg_scale_3_and_checkpoint_prompt_none(rig: Rig):
    face = await rig.ready_tune(owner=1, profile="faceid", branch="sd15")
    assert face.astria_id is not None
    checkpoint = await rig.ready_tune(owner=2, profile="sd15-checkpoint", branch="sd15")
    await rig.prompt(1, face, f"<faceid:{face.astria_id}:1> man, portrait", target=SD15_BASE)
    await rig.prompt(2, checkpoint, "sks man, portrait")
    await rig.step(1)
    [faceid_prompt] = [p for p in rig.emulator.prompts_for(SD15_BASE) if "faceid" in p["text"]]
    assert faceid_prompt["cfg_scale"] == "3.0"  # Astria answers it as a string
    [checkpoint_prompt] = rig.emulator.prompts_for(checkpoint.astria_id or 0)
    assert checkpoint_prompt["cfg_scale"] is None
    await rig.run_until(lambda: _all_settled(rig), step=5)
    await rig.ledger_matches_charges()


async def _all_settled(rig: Rig) -> bool:
    return await rig.store.ledger.open_reservations() == []
