"""Settings → application server command lines, and the generated nginx/Apache/systemd/uWSGI
configuration, checked by the real nginx where it can be."""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from coverslip import config
from coverslip.deploy import configs, servers
from coverslip.home import Home


def settings_of(home: Home, **values: object) -> config.Settings:
    """Return the settings of ``home`` from defaults and ``values`` (as if set by flags)."""
    flags = {name.replace("__", "."): value for name, value in values.items()}
    return config.load(home.config_file, environ={}, flags=flags)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home(tmp_path / "home").create()


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_granian_maps_settings_and_names_what_it_cannot_honour(home: Home) -> None:
    settings = settings_of(
        home,
        web__application_server="granian",
        web__workers=3,
        web__threads=6,
        web__worker_connections=200,
        web__graceful_timeout=7,
        web__timeout=30,
        web__max_requests=1000,
        web__log_level="warning",
        web__args="--http 1",
    )
    plan = servers.plan(settings, home, "web")
    argv = plan.argv
    assert argv[1:3] == ["-m", "granian"]
    assert option(argv, "--interface") == "wsgi"
    assert option(argv, "--factory") == "coverslip.deploy.targets:web_granian"
    assert (option(argv, "--host"), option(argv, "--port")) == ("127.0.0.1", "4080")
    assert option(argv, "--workers") == "3"
    assert option(argv, "--blocking-threads") == "9"  # web.threads and three spare
    assert option(argv, "--backpressure") == "200"
    assert option(argv, "--workers-kill-timeout") == "7"
    assert option(argv, "--log-level") == "warning"
    assert argv[-2:] == ["--http", "1"]
    assert "--access-log" not in argv  # the application writes the access log
    assert "COVERSLIP_ACCESS_LOG_FILE" not in plan.env  # development: no access log
    notes = " ".join(plan.notes)
    assert "web.timeout" in notes and "web.max_requests" in notes
    # Settings left at their defaults are not reported.
    assert "web.keepalive" not in notes and "web.preload" not in notes
    log_config = json.loads(plan.files[home.run / "web-granian-logging.json"])
    assert "_granian" in log_config["loggers"]


def test_gunicorn_maps_every_setting(home: Home) -> None:
    settings = settings_of(
        home,
        web__application_server="gunicorn",
        web__env="production",
        web__workers=4,
        web__threads=3,
        web__timeout=90,
        web__graceful_timeout=12,
        web__keepalive=9,
        web__max_requests=500,
        web__max_requests_jitter=50,
        web__preload=True,
        web__forwarded_allow_ips="10.0.0.1,10.0.0.2",
        web__host="::1",
    )
    plan = servers.plan(settings, home, "web")
    argv = plan.argv
    assert argv[1:3] == ["-m", "gunicorn"]
    assert option(argv, "--config") == "python:coverslip.deploy.gunicorn_conf"
    assert option(argv, "--bind") == "[::1]:4080"
    assert option(argv, "--worker-class") == "gthread"
    assert option(argv, "--threads") == "3"
    assert option(argv, "--worker-connections") == "1000"
    assert option(argv, "--timeout") == "90"
    assert option(argv, "--graceful-timeout") == "12"
    assert option(argv, "--keep-alive") == "9"
    assert option(argv, "--max-requests") == "500"
    assert option(argv, "--max-requests-jitter") == "50"
    assert option(argv, "--forwarded-allow-ips") == "10.0.0.1,10.0.0.2"
    assert "--preload" in argv
    assert "--access-logfile" not in argv  # the application writes it, as under every server
    assert plan.env["COVERSLIP_ACCESS_LOG_FILE"] == str(home.log / "web-access.log")
    assert plan.logs.error == str(home.log / "web-error.log")
    assert argv[-1] == "coverslip.deploy.targets:web_gunicorn()"
    assert plan.notes == []


def test_gunicorn_sync_and_gevent_workers_drop_threads_with_a_note(home: Home) -> None:
    sync = servers.plan(
        settings_of(
            home, web__application_server="gunicorn", web__worker_class="sync", web__threads=8
        ),
        home,
    )
    # NOTE: Gunicorn would silently turn sync into gthread if it got --threads.
    assert "--threads" not in sync.argv and "--worker-connections" not in sync.argv
    assert any("web.threads" in note for note in sync.notes)
    gevent = servers.plan(
        settings_of(home, web__application_server="gunicorn", web__worker_class="gevent"), home
    )
    assert option(gevent.argv, "--worker-class") == "gevent"
    assert option(gevent.argv, "--worker-connections") == "1000"


def test_uwsgi_maps_settings_to_an_http_socket_master(home: Home) -> None:
    settings = settings_of(
        home,
        web__application_server="uwsgi",
        thumbs__workers=2,
        thumbs__port=5001,
        web__timeout=45,
        web__max_requests=100,
        web__max_requests_jitter=10,
        web__env="production",
        web__keepalive=3,
    )
    plan = servers.plan(settings, home, "thumbs")
    argv = plan.argv
    assert Path(argv[0]).name == "uwsgi"
    assert "--master" in argv and "--die-on-term" in argv and "--lazy-apps" in argv
    assert option(argv, "--http-socket") == "127.0.0.1:5001"
    assert option(argv, "--module") == "coverslip.deploy.targets:thumbs_uwsgi"
    assert option(argv, "--processes") == "2"
    assert option(argv, "--harakiri") == "45"
    assert option(argv, "--max-requests") == "100"
    assert option(argv, "--max-requests-delta") == "10"
    assert "--disable-logging" in argv and "--req-logger" not in argv
    assert f"COVERSLIP_ACCESS_LOG_FILE={home.log / 'thumbs-access.log'}" in argv
    assert any("web.keepalive" in note for note in plan.notes)


def test_log_targets(home: Home) -> None:
    development = servers.log_targets(settings_of(home), home, "web")
    assert development == servers.Logs(access=None, error="-")
    production = servers.log_targets(settings_of(home, web__env="production"), home, "thumbs")
    assert production.access == str(home.log / "thumbs-access.log")
    terminal = servers.log_targets(
        settings_of(home, web__env="production", web__access_log="-", web__error_log="a.log"),
        home,
        "web",
    )
    assert terminal == servers.Logs(access="-", error=str(home.log / "a.log"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def nginx_main(folder: Path, site: str, port_comment: str = "") -> Path:
    """Write a self-contained nginx.conf around ``site`` in ``folder`` and return its path."""
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 256; }}
http {{
    include /etc/nginx/mime.types;
    access_log {folder}/access.log;
    client_body_temp_path {folder}/body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
{site}
}}
"""
    )
    return conf


NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def nginx_test(conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NGINX, "-t", "-c", str(conf), "-p", str(conf.parent)], capture_output=True, text=True
    )


def test_nginx_site_passes_nginx_t(home: Home, tmp_path: Path) -> None:
    settings = settings_of(home, web__port=4090, thumbs__port=4091, images__size_cap="2G")
    site = configs.nginx(settings, home, http=free_port(), server_name="images.example.org")
    assert "server 127.0.0.1:4090" in site and "server 127.0.0.1:4091" in site
    assert site.count("keepalive 32;") == 2
    assert "client_max_body_size 2g;" in site
    assert "server_name images.example.org;" in site
    assert "proxy_request_buffering off;" in site
    assert f"alias {home.root}/;" in site and "internal;" in site
    assert f"alias {configs.static_folder()}/;" in site
    assert "error_page 502 503 504 = @maintenance;" in site
    result = nginx_test(nginx_main(tmp_path, site))
    assert result.returncode == 0, result.stderr


def test_nginx_location_fits_inside_a_server_block(home: Home, tmp_path: Path) -> None:
    text = configs.nginx_location(settings_of(home), home, max_body_size=0)
    assert "upstream" not in text and "proxy_pass http://127.0.0.1:4081;" in text
    site = f"server {{\n    listen {free_port()};\n{text}}}\n"
    result = nginx_test(nginx_main(tmp_path, site))
    assert result.returncode == 0, result.stderr


def test_nginx_size() -> None:
    assert configs.nginx_size(0) == "0"
    assert configs.nginx_size(3 * 1024**2) == "3m"
    assert configs.nginx_size(1000) == "1000"


def test_systemd_units(home: Home) -> None:
    settings = settings_of(home, web__graceful_timeout=20)
    unit = configs.systemd(settings, home, "thumbs", user="images")
    assert "ExecStart=" in unit and unit.split("ExecStart=")[1].split("\n")[0].endswith(
        "thumbs start --foreground"
    )
    assert "User=images" in unit
    assert f"Environment=COVERSLIP_HOME={home.root}" in unit
    assert "TimeoutStopSec=35" in unit
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(unit)
    assert parser["Service"]["Type"] == "exec"
    worker = configs.systemd(settings, home, "worker", user="images")
    assert worker.split("ExecStart=")[1].split("\n")[0].endswith(" worker run")
    assert "Description=Coverslip job worker" in worker


def test_uwsgi_ini_is_an_ini_the_launcher_agrees_with(home: Home) -> None:
    settings = settings_of(home, web__workers=3)
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(configs.uwsgi_ini(settings, home))
    section = parser["uwsgi"]
    assert section["http-socket"] == "127.0.0.1:4080"
    assert section["module"] == "coverslip.deploy.targets:web_uwsgi"
    assert section["processes"] == "3"
    assert section["die-on-term"] == "true"


def test_apache_site_streams_chunked_uploads(home: Home) -> None:
    site = configs.apache(settings_of(home), home, http=8080, server_name="images")
    assert "<VirtualHost *:8080>" in site
    assert "SetEnv proxy-sendchunked 1" in site
    assert 'ProxyPass / "http://127.0.0.1:4080/"' in site
    assert "http://127.0.0.1:4081/$1/$2$3" in site
    assert "ProxyPass /static/ !" in site


def test_config_commands_print_the_same(home: Home) -> None:
    from click.testing import CliRunner

    from coverslip.cli import main
    from coverslip.deploy.cli import register

    register(main)
    runner = CliRunner()
    base = ["--home", str(home.root), "config"]
    nginx = runner.invoke(main, [*base, "nginx", "--http", "8081", "--max-body-size", "1G"])
    assert nginx.exit_code == 0, nginx.output
    assert "listen 8081;" in nginx.output and "client_max_body_size 1g;" in nginx.output
    bad = runner.invoke(main, [*base, "nginx", "--max-body-size", "lots"])
    assert bad.exit_code == 2
    for args in (["nginx-location"], ["systemd", "thumbs"], ["uwsgi"], ["apache"]):
        result = runner.invoke(main, [*base, *args])
        assert result.exit_code == 0, result.output
        assert str(home.root) in result.output


def test_nginx_buffers_small_bodies_and_drops_quiet_clients(tmp_path: Path) -> None:

    home = Home(tmp_path)
    site = configs.nginx(home.settings({}, {"web.body_timeout": "12"}), home)
    assert "client_body_timeout 12s;" in site and "client_header_timeout 12s;" in site
    # Only original files (uploaded or staged) stream through unbuffered: one location.
    unbuffered = site.split("proxy_request_buffering off;")
    assert len(unbuffered) == 2
    opening = unbuffered[0].rstrip().splitlines()[-2].split()
    assert opening[:2] == ["location", "~"] and opening[-1] == "{"
    # Chunked uploads are read whole by nginx (HTTP/1.0 upstream), so a cut one never passes.
    assert unbuffered[0].rstrip().splitlines()[-1].split() == ["proxy_http_version", "1.0;"]
    streamed = re.compile(" ".join(opening[2:-1]))
    for path in ("/api/v2/images/7/file", "/api/v2/images/7/stage"):
        assert streamed.search(path), path
    for path in (
        "/api/v2/images",
        "/api/v2/images/7",
        "/api/v2/images/7/import",
        "/api/v2/images/7/tags/file",
        "/api/v2/images/7/files",
        "/api/v2/images/7/stage/x",
        "/login",
    ):
        assert not streamed.search(path), path
    # Every other images API body is buffered by the prefix location.
    assert site.count(f"location {configs.UPLOAD_PREFIX} {{") == 1
