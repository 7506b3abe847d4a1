"""Settings: layering (default < file < env < flag), validation, and the generated docs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from coverslip import config
from coverslip.cli import main

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


BAD_PUBLIC_URLS = [
    "images.example.org",  # no scheme
    "ftp://images.example.org",
    "javascript://images.example.org",
    "https://",
    "https://:8443",
    "https://images.example.org/?view=1",
    "https://images.example.org/#top",
    "https://admin:secret@images.example.org",
    "https://images.example.org:99999",
    "https://images.example.org\r\nSet-Cookie: a=b",
    "https://images.example.org/a b",
]


@pytest.mark.parametrize("value", BAD_PUBLIC_URLS)
def test_config_set_refuses_a_bad_public_url(tmp_path: Path, value: str) -> None:
    home = ["--home", str(tmp_path / "home")]
    runner = CliRunner()
    refused = runner.invoke(main, [*home, "config", "set", "web.public_url", value])
    assert refused.exit_code == 1, refused.output
    message = " ".join(refused.output.split())  # the terminal may wrap the line
    assert "web.public_url" in message and "http(s) URL with a host" in message, message
    assert "Traceback" not in refused.output
    # Nothing was written: the server still starts with the previous value.
    got = runner.invoke(main, [*home, "config", "get", "web.public_url"])
    assert got.exit_code == 0 and got.output.strip() == ""


def test_config_set_keeps_a_good_public_url_and_a_bad_one_elsewhere_is_named(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    runner = CliRunner()
    base = ["--home", str(home), "config"]
    for value, kept in [
        ("https://images.example.org/", "https://images.example.org"),
        ("http://[::1]:8080/coverslip", "http://[::1]:8080/coverslip"),
        ("", ""),
    ]:
        done = runner.invoke(main, [*base, "set", "web.public_url", value])
        assert done.exit_code == 0, done.output
        got = runner.invoke(main, [*base, "get", "web.public_url"])
        assert got.output.strip() == kept
    # A bad value put in the file or the environment by hand is named on the next command,
    # and can still be unset.
    config.write_file(home / "etc" / "coverslip.toml", {"web.public_url": "images.example.org"})
    named = runner.invoke(main, [*base, "get", "web.public_url"])
    assert named.exit_code == 1 and "web.public_url" in named.output, named.output
    assert runner.invoke(main, [*base, "unset", "web.public_url"]).exit_code == 0
    assert runner.invoke(main, [*base, "get", "web.public_url"]).exit_code == 0
    with pytest.raises(config.SettingError, match="web.public_url"):
        config.load(None, {"COVERSLIP_WEB_PUBLIC_URL": "ftp://images.example.org"})


def test_sizes() -> None:
    assert config.parse_size("512") == 512
    assert config.parse_size("64M") == 64 * 1024**2
    assert config.parse_size("2G") == 2 * 1024**3
    assert config.lookup("images.size_cap").convert("1k") == 1024


def test_docs_are_generated_from_the_registry() -> None:
    assert DOCS.read_text() == config.render_docs(), (
        "docs/configuration.md is stale: run `make docs`"
    )
