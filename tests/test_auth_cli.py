"""`coverslip user|group|token` end to end, in a temporary instance home."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from coverslip.cli import main
from coverslip.home import Home
from coverslip.services import Services


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("COVERSLIP_HOME", str(tmp_path))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0) -> str:
        result = runner.invoke(main, list(args))
        assert result.exit_code == code, result.output
        return result.output

    return invoke


def services(tmp_path: Path) -> Services:
    home = Home(tmp_path)
    return Services.build(home.settings({}), home)


def test_ensure_admin_prints_a_password_once(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = run("user", "ensure-admin")
    assert "password:" in first
    password = first.split("password:")[1].split()[0]
    assert "password" not in run("user", "ensure-admin").split("exists")[1]
    auth = services(tmp_path).auth
    assert auth.directory.authenticate("admin", password) is not None
    assert auth.directory.find_group("Public").permissions == "public"


def test_users_groups_and_tokens(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run("group", "add", "lab", "--permissions", "read-only")
    run("user", "add", "ana", "--password", "ana-password", "--full-name", "Ana", "--group", "lab")
    run("user", "add", "bo", "--password", "short", code=1)
    run("user", "add", "ana", "--password", "ana-password", code=1)
    run("user", "add", "bo", "--random-password")
    run("group", "adduser", "lab", "bo", "--owner")
    users = {u["username"]: u for u in json.loads(run("user", "list", "--json"))}
    assert users["ana"]["groups"] == ["lab"] and users["bo"]["groups"] == ["lab*"]
    assert "Ana" in run("user", "list")
    run("group", "set-permissions", "lab", "read-write")
    run("group", "set-downloads", "lab", "off")
    groups = {g["name"]: g for g in json.loads(run("group", "list", "--json"))}
    assert groups["lab"]["permissions"] == "read-write"
    assert groups["lab"]["downloads"] is False
    assert groups["lab"]["members"] == ["ana", "bo*"]
    run("group", "set-permissions", "lab", "everyone", code=2)
    run("group", "removeuser", "lab", "ana")
    run("group", "removeuser", "lab", "ana", code=1)

    token = run("token", "create", "--user", "ana", "--name", "laptop", "--expires", "30")
    secret = token.strip().split()[-1]
    auth = services(tmp_path).auth
    caller = auth.caller_for_token(secret)
    assert caller is not None and caller.user is not None and caller.user.username == "ana"
    listed = json.loads(run("token", "list", "--json"))
    assert [(t["username"], t["name"]) for t in listed] == [("ana", "laptop")]
    assert secret not in run("token", "list")
    as_json = json.loads(run("token", "create", "ana", "--json"))
    assert as_json["token"].startswith("csk_")
    run("token", "revoke", str(listed[0]["id"]))
    assert services(tmp_path).auth.caller_for_token(secret) is None
    run("token", "revoke", "999", code=1)

    key, _ = auth.login("ana", "ana-password")
    run("user", "passwd", "ana", "--password", "new-ana-password")
    assert services(tmp_path).auth.caller_for_session(key) is None
    key, _ = auth.login("ana", "new-ana-password")
    run("user", "disable", "ana")
    fresh = services(tmp_path).auth
    assert fresh.caller_for_session(key) is None
    assert fresh.caller_for_token(as_json["token"]) is None
    assert json.loads(run("user", "list", "--json"))[-2]["disabled"] is True
    run("user", "disable", "ana", "--enable")
    run("user", "disable", "nobody", code=1)
