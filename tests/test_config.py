"""Settings: defaults, and one readable message naming the variable for every bad value."""

from __future__ import annotations

import base64
import os
import secrets
import string
from pathlib import Path

import pydantic
import pytest

from bot.config import (
    ConfigError,
    Settings,
    env_file_used,
    fresh_signing_key,
    load_settings,
    setting_example,
    signing_key_bits,
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Tests read no real .env and no stray variables from the machine.
    monkeypatch.chdir(tmp_path)
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def problem(**values: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**values)
    text = str(caught.value)
    assert "Traceback" not in text and "pydantic" not in text.lower()
    return text


def test_defaults_are_safe():
    s = load_settings()
    assert s.astria_base_url == "https://api.astria.ai"
    assert s.astria_branch == "fast" and s.tune_price() == 0 and s.image_price() == 0
    assert s.astria_idempotency == "auto"  # found by the probe, not assumed
    assert s.database_path == Path("data/bot.sqlite3")
    assert s.profile.name == "flux-lora" and s.profile.base_tune_id == 1504944
    assert s.profile.prompts_go_to_base
    assert s.profile.training_preset == "flux-lora-portrait"  # Astria's recommendation
    assert not s.profile.takes_negative_prompt  # "No negatives" on Flux
    assert s.profile_named("faceid").cfg_scale == 3.0
    assert s.profile_named("sd15-checkpoint").training_preset is None
    assert s.profile_named("sd15-checkpoint").cfg_scale is None
    assert s.astria_retry_base_seconds == 30 and s.astria_lookup_wait_seconds == 60


def test_reads_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    (tmp_path / ".env").write_text("ASTRIA_BRANCH=sd15\nMODEL_PROFILE=sd15-checkpoint\n")
    monkeypatch.setenv("ASTRIA_IDEMPOTENCY", "true")
    monkeypatch.setenv("TUNE_PRICE_MC", '{"sd15": 99000}')
    s = load_settings()
    assert s.astria_branch == "sd15" and s.astria_idempotency is True
    assert s.tune_price() == 99_000 and s.tune_price_mc["flux1"] == 150_000
    assert s.profile.model_type is None and s.profile.token == "sks"
    assert not s.profile.prompts_go_to_base


@pytest.mark.parametrize(
    ("values", "names", "hint"),
    [
        ({"astria_branch": "turbo"}, "ASTRIA_BRANCH", "fast"),
        ({"model_profile": "sdxl"}, "MODEL_PROFILE", "flux-lora"),
        ({"astria_base_url": "http://api.example.com"}, "ASTRIA_BASE_URL", "127.0.0.1"),
        ({"astria_base_url": "nonsense"}, "ASTRIA_BASE_URL", "https://"),
        ({"discord_api_base": "http://10.1.2.3/api/v10"}, "DISCORD_API_BASE", "127.0.0.1"),
        ({"discord_gateway_url": "wss://gateway.example"}, "DISCORD_GATEWAY_URL", "local"),
        ({"budget_timezone": "Mars/Olympus"}, "BUDGET_TIMEZONE", "Europe/Paris"),
        ({"poll_max_seconds": "soon"}, "POLL_MAX_SECONDS", "number"),
        ({"user_daily_limit_mc": -5}, "USER_DAILY_LIMIT_MC", "0"),
        ({"tune_price_mc": {"gold": 5}}, "TUNE_PRICE_MC", "fast"),
        ({"image_price_mc": {"sd15": -1}}, "IMAGE_PRICE_MC", "negative"),
        ({"callback_listen": "8080"}, "CALLBACK_LISTEN", "HOST:PORT"),
        ({"astria_idempotency": "maybe"}, "ASTRIA_IDEMPOTENCY", "ASTRIA_IDEMPOTENCY=auto"),
        ({"flux_training_preset": "flux-lora-high"}, "FLUX_TRAINING_PRESET", "flux-lora-focus"),
        ({"public_callback_url": "http://bot.example.com/cb"}, "PUBLIC_CALLBACK_URL", "https"),
        ({"database_url": "mysql://bot:pw@db/bot"}, "DATABASE_URL", "postgresql://"),
        (
            {"public_callback_url": "https://bot.example.com/cb"},
            "CALLBACK_SIGNING_KEY",
            "random",
        ),
    ],
)
def test_bad_values_name_the_variable_and_the_fix(values: dict[str, object], names: str, hint: str):
    text = problem(**values)
    assert names in text and hint in text


def test_database_url_picks_postgresql_and_stays_secret(monkeypatch: pytest.MonkeyPatch):
    assert load_settings().database_location == Path("data/bot.sqlite3")  # SQLite by default
    monkeypatch.setenv("DATABASE_URL", "postgresql://bot:hunter2@db.internal:5432/bot")
    settings = load_settings()
    location = settings.database_location
    assert not isinstance(location, Path)
    assert location.get_secret_value().endswith("@db.internal:5432/bot")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(location)
    monkeypatch.setenv("DATABASE_URL", "")  # an empty line in .env: still SQLite
    assert load_settings().database_url is None


@pytest.mark.parametrize(
    "key",
    [
        "k",  # the 1-character key the review recovered from one URL
        "0123456789abcdef0123456789abcdef",  # 32 hex characters: 128 bits, not 256
        "a" * 200,  # long, one character
        "ab" * 100,  # long, a short repeated pattern
        "Zm9vYmFy" * 5,  # 40 base64 characters: 240 bits
        "clé-secrète-" * 6,  # not ASCII
    ],
)
def test_a_weak_signing_key_is_refused_with_a_fresh_example(key: str):
    text = problem(callback_signing_key=key)
    assert "CALLBACK_SIGNING_KEY" in text
    assert len(key) < 8 or key not in text  # the secret is never echoed
    example = text.split("CALLBACK_SIGNING_KEY=", 1)[1].split()[0]
    assert load_settings(callback_signing_key=example).callback_signing_key is not None


@pytest.mark.parametrize(
    "key",
    [
        secrets.token_hex(32),  # 64 hex characters
        secrets.token_urlsafe(32),  # 43 base64url characters
        base64.b64encode(secrets.token_bytes(32)).decode(),  # 44 base64 characters
        "".join(secrets.choice(string.printable[:94]) for _ in range(40)),  # 262 bits
    ],
)
def test_a_key_of_32_random_bytes_is_accepted(key: str):
    settings = load_settings(callback_signing_key=key)
    assert settings.callback_signing_key is not None
    assert signing_key_bits(key) >= 256


@pytest.mark.parametrize(
    ("raw", "value"),
    [("auto", "auto"), ("AUTO", "auto"), ("true", True), ("1", True), ("false", False)],
)
def test_idempotency_is_auto_true_or_false(
    monkeypatch: pytest.MonkeyPatch, raw: str, value: object
):
    monkeypatch.setenv("ASTRIA_IDEMPOTENCY", raw)
    assert load_settings().astria_idempotency == value


def test_flux_preset_none_sends_no_preset():
    assert load_settings(flux_training_preset="none").profile.training_preset is None
    assert load_settings(flux_training_preset="flux-lora-focus").profile.training_preset == (
        "flux-lora-focus"
    )


@pytest.mark.parametrize(
    ("branch", "profile"),
    [("sd15", "flux-lora"), ("flux1", "faceid"), ("flux1", "sd15-checkpoint"), ("sdxl1", "faceid")],
)
def test_a_branch_the_profile_cannot_train_on_is_refused_with_the_valid_pairs(
    branch: str, profile: str
):
    text = problem(astria_branch=branch, model_profile=profile)
    assert f"ASTRIA_BRANCH={branch} does not go with MODEL_PROFILE={profile}" in text
    assert "flux-lora: fast, flux1; sd15-checkpoint: fast, sd15; faceid: fast, sd15" in text
    assert "for example MODEL_PROFILE=flux-lora with ASTRIA_BRANCH=flux1" in text


@pytest.mark.parametrize("profile", ["flux-lora", "sd15-checkpoint", "faceid"])
def test_sdxl1_is_not_offered_under_any_profile(profile: str):
    assert "No profile trains SDXL tunes" in problem(astria_branch="sdxl1", model_profile=profile)


@pytest.mark.parametrize(
    ("branch", "profile"),
    [
        ("fast", "flux-lora"),
        ("flux1", "flux-lora"),
        ("fast", "sd15-checkpoint"),
        ("sd15", "sd15-checkpoint"),
        ("fast", "faceid"),
        ("sd15", "faceid"),
    ],
)
def test_every_documented_pair_loads(branch: str, profile: str):
    s = load_settings(astria_branch=branch, model_profile=profile)
    assert (s.astria_branch, s.model_profile) == (branch, profile)


def test_several_problems_are_listed_together():
    text = problem(astria_branch="x", poll_max_seconds="y")
    assert "ASTRIA_BRANCH" in text and "POLL_MAX_SECONDS" in text


def test_unparseable_json_setting_is_explained(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IMAGE_PRICE_MC", "{not json")
    text = problem()
    assert "IMAGE_PRICE_MC" in text and "JSON" in text


def test_bad_secret_value_is_not_echoed(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DEV_GUILD_ID", "sd_secret_looking_value")
    text = problem()
    assert "DEV_GUILD_ID" in text and "sd_secret_looking_value" not in text


def test_loopback_overrides_are_accepted():
    s = load_settings(
        discord_api_base="http://127.0.0.1:9000/api/v10",
        discord_gateway_url="ws://[::1]:9001/gateway",
        astria_base_url="http://localhost:8765/",
    )
    assert s.discord_api_base == "http://127.0.0.1:9000/api/v10"
    assert s.astria_base_url == "http://localhost:8765"


def test_fast_branch_is_free_whatever_the_table_says():
    assert load_settings(tune_price_mc={"fast": 500}).tune_price_mc["fast"] == 0


def test_require_names_missing_secrets_and_where_to_get_them():
    s = load_settings()
    with pytest.raises(ConfigError) as caught:
        s.require("discord_token", "astria_api_key")
    text = str(caught.value)
    assert "DISCORD_TOKEN" in text and "ASTRIA_API_KEY" in text
    assert "astria.ai/users/edit#api" in text
    load_settings(discord_token="t", astria_api_key="k").require("discord_token", "astria_api_key")


EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def test_env_example_documents_every_setting_and_loads_as_is(tmp_path: Path):
    text = EXAMPLE.read_text()
    lines = text.splitlines()
    for name in Settings.model_fields:
        var = name.upper()
        index = next((i for i, line in enumerate(lines) if line.startswith(f"{var}=")), None)
        assert index is not None, f"{var} is missing from .env.example"
        assert lines[index - 1].startswith("# "), f"{var} has no one-line comment"
    (tmp_path / ".env").write_text(text)
    s = load_settings()
    assert s.discord_token is None and s.dev_guild_id is None and s.tune_price() == 0


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        (
            "ASTRIA_IDEMPOTENCY",
            "maybe",
            "must be auto, true or false, like ASTRIA_IDEMPOTENCY=auto",
        ),
        ("TUNE_PRICE_MC", "150000", 'must be JSON like TUNE_PRICE_MC={"flux1": 150000}'),
        ("IMAGE_PRICE_MC", '{"flux1": "x"}', "flux1: must be a whole number, like IMAGE_PRICE_MC="),
        ("MAX_JOBS_IN_FLIGHT", "many", "must be a whole number, like MAX_JOBS_IN_FLIGHT=50"),
        (
            "MAX_JOBS_IN_FLIGHT",
            "0",
            "must be greater than or equal to 1, like MAX_JOBS_IN_FLIGHT=50",
        ),
        ("POLL_MAX_SECONDS", "soon", "must be a number, like POLL_MAX_SECONDS=600"),
        ("POST_IMAGE_LINKS", "perhaps", "must be true or false, like POST_IMAGE_LINKS=false"),
        ("ASTRIA_BRANCH", "gold", "or 'sdxl1', like ASTRIA_BRANCH=fast"),
        ("DEV_GUILD_ID", "abc", "must be a whole number, like DEV_GUILD_ID=123456789012345678"),
        ("ASTRIA_BASE_URL", "http://10.0.0.1", "like ASTRIA_BASE_URL=https://api.astria.ai"),
        ("DISCORD_API_BASE", "https://x.example", "like DISCORD_API_BASE=http://127.0.0.1:"),
    ],
)
def test_every_kind_of_bad_value_comes_with_a_valid_example(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
):
    monkeypatch.setenv(variable, value)
    text = problem()
    assert f"{variable}: " in text and words in text, text
    assert "Input should" not in text


def test_every_example_a_setting_error_offers_is_itself_valid(monkeypatch: pytest.MonkeyPatch):
    offered = {name: setting_example(name) for name in Settings.model_fields}
    # Every setting has one, but the signing key: its own error prints a fresh random key.
    assert [name for name, value in offered.items() if value is None] == ["callback_signing_key"]
    for name, value in offered.items():
        if value is not None:
            monkeypatch.setenv(name.upper(), value)
    monkeypatch.setenv("CALLBACK_SIGNING_KEY", fresh_signing_key())
    settings = load_settings()
    assert settings.dev_guild_id == 123456789012345678
    assert settings.tune_price_mc["flux1"] == 150_000


def test_the_env_file_read_is_named_only_when_there_is_one(tmp_path: Path):
    assert env_file_used() is None
    (tmp_path / ".env").write_text("ASTRIA_BRANCH=fast\n")
    assert env_file_used() == (tmp_path / ".env").resolve()


def test_a_partial_shard_set_is_refused_on_sqlite_and_allowed_on_postgresql() -> None:
    """Other processes hold the other shards only if they can share the jobs: through the
    job leases, on PostgreSQL."""
    from bot.preflight import StartProblem, refuse_partial_shards

    partial = {"shard_count": 2, "shard_ids": "1"}
    with pytest.raises(StartProblem, match="DATABASE_URL"):
        refuse_partial_shards(Settings(_env_file=None, **partial))  # type: ignore[arg-type]
    url = "postgresql://bot@127.0.0.1:5432/bot"
    refuse_partial_shards(Settings(_env_file=None, database_url=url, **partial))  # type: ignore[arg-type]


def test_each_process_has_its_own_lease_holder_id_by_default() -> None:
    first = Settings(_env_file=None)
    assert first.process_id.endswith(f"-{os.getpid()}")
    assert Settings(_env_file=None, process_id="bot-a").process_id == "bot-a"
    with pytest.raises(pydantic.ValidationError):
        Settings(_env_file=None, lease_seconds=1)
