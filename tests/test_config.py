"""Settings: layering (default < file < env < flag), validation, and the generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from coverslip import config

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_defaults_cover_every_setting() -> None:
    settings = config.load()
    assert set(settings) == set(config.REGISTRY)
    assert settings["web.port"] == 4080
    assert settings["thumbs.port"] == 4081
    assert settings["web.application_server"] == "granian"


def test_layering_order(tmp_path: Path) -> None:
    file = tmp_path / "coverslip.toml"
    config.write_file(file, {"web.port": 5000, "web.workers": 3, "web.timeout": 90})
    env = {"COVERSLIP_WEB_PORT": "6000", "COVERSLIP_WEB_WORKERS": "4"}
    settings = config.load(file, env, {"web.port": 7000})
    assert settings["web.port"] == 7000
    assert settings.sources["web.port"] == "flag"
    assert settings["web.workers"] == 4
    assert settings.sources["web.workers"] == "environment"
    assert settings["web.timeout"] == 90
    assert settings.sources["web.timeout"] == str(file)
    assert settings["web.keepalive"] == 5
    assert settings.sources["web.keepalive"] == "default"


def test_nested_names_round_trip(tmp_path: Path) -> None:
    file = tmp_path / "coverslip.toml"
    config.write_file(file, {"web.public.enabled": False, "web.forwarded_allow_ips": ["10.0.0.1"]})
    assert "[web.public]" in file.read_text()
    settings = config.load(file, {})
    assert settings["web.public.enabled"] is False
    assert settings["web.forwarded_allow_ips"] == ["10.0.0.1"]


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("web.port", "abc", "an integer from 1 to 65535"),
        ("web.port", "70000", "an integer from 1 to 65535"),
        ("web.workers", "0", "an integer from 1 to 1024"),
        ("web.graceful_timeout", "-1", "at least 0"),
        ("web.preload", "maybe", "true or false"),
        ("web.application_server", "waitress", "one of granian, gunicorn, uwsgi"),
        ("images.size_cap", "12 parsecs", "a size in bytes"),
        ("web.timeout", "1.5", "an integer"),
    ],
)
def test_validation_names_setting_value_and_allowed(name: str, value: str, allowed: str) -> None:
    with pytest.raises(config.SettingError) as caught:
        config.lookup(name).convert(value)
    message = str(caught.value)
    assert name in message
    assert repr(value) in message
    assert allowed in message


def test_bad_environment_value_is_refused() -> None:
    with pytest.raises(config.SettingError, match="web.port"):
        config.load(None, {"COVERSLIP_WEB_PORT": "eighty"})


def test_unknown_setting_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "coverslip.toml"
    file.write_text("[web]\nprot = 1\n")
    with pytest.raises(config.SettingError, match="unknown setting 'web.prot'"):
        config.load(file, {})


def test_broken_toml_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "coverslip.toml"
    file.write_text("[web\n")
    with pytest.raises(config.SettingError, match="not valid TOML"):
        config.load(file, {})


def test_sizes() -> None:
    assert config.parse_size("512") == 512
    assert config.parse_size("64M") == 64 * 1024**2
    assert config.parse_size("2G") == 2 * 1024**3
    assert config.lookup("images.size_cap").convert("1k") == 1024


def test_docs_are_generated_from_the_registry() -> None:
    assert DOCS.read_text() == config.render_docs(), (
        "docs/configuration.md is stale: run `make docs`"
    )
