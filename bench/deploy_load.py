"""Cached thumbnails through nginx, for each application server, side by side.

    python bench/deploy_load.py [--runs 3]

For granian, gunicorn (gthread and gevent) and uwsgi: `coverslip web start` and
`coverslip thumbs start` with the default worker counts, nginx with the site that
`coverslip config nginx` writes, then `ab -n 5000 -c 100` against render_thumbnail through
nginx. nginx serving the same thumbnail bytes as a static file is the reference, in the
same run. Medians of --runs runs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
from gateway_load import ab, free_port, wait_http

BIN = Path(sys.executable).parent
SERVERS = {
    "granian": {"COVERSLIP_WEB_APPLICATION_SERVER": "granian"},
    "gunicorn gthread": {
        "COVERSLIP_WEB_APPLICATION_SERVER": "gunicorn",
        "COVERSLIP_WEB_WORKER_CLASS": "gthread",
    },
    "gunicorn gevent": {
        "COVERSLIP_WEB_APPLICATION_SERVER": "gunicorn",
        "COVERSLIP_WEB_WORKER_CLASS": "gevent",
    },
    "uwsgi": {"COVERSLIP_WEB_APPLICATION_SERVER": "uwsgi"},
}


def run(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([str(BIN / "coverslip"), *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"coverslip {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def nginx_conf(folder: Path, site: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = folder / "nginx.conf"
    conf.write_text(
        f"""{user}worker_processes auto;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 4096; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="coverslip-deploy-bench-"))
    work.chmod(0o755)
    home = work / "home"
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")}
    base_env.update({"COVERSLIP_HOME": str(home), "COVERSLIP_WEB_ENV": "production"})
    rows: list[tuple[str, dict[str, float]]] = []
    try:
        run(base_env, "user", "ensure-admin")
        yy, xx = np.mgrid[0:512, 0:512]
        np.save(
            work / "plane.npy",
            (1000 + 800 * np.sin(xx / 30.0) * np.cos(yy / 40.0)).astype(np.uint16),
        )
        output = run(base_env, "import", str(work / "plane.npy"), "--group", "Public", "--json")
        image_id = json.loads(output.strip().splitlines()[-1])["imported"][0]
        static = work / "static"
        static.mkdir()
        for name, extra in SERVERS.items():
            env = {
                **base_env,
                **extra,
                "COVERSLIP_WEB_PORT": str(free_port()),
                "COVERSLIP_THUMBS_PORT": str(free_port()),
            }
            port = free_port()
            site = run(env, "config", "nginx", "--http", str(port), "--servername", "localhost")
            conf = nginx_conf(work / f"nginx-{name.replace(' ', '-')}", site)
            run(env, "web", "start")
            run(env, "thumbs", "start")
            nginx = subprocess.Popen(
                ["nginx", "-c", str(conf), "-p", str(conf.parent), "-g", "daemon off;"]
            )
            try:
                url = f"http://127.0.0.1:{port}/webgateway/render_thumbnail/{image_id}/"
                wait_http(url)
                if not (static / "thumb.jpg").exists():
                    with urllib.request.urlopen(url) as answer:
                        (static / "thumb.jpg").write_bytes(answer.read())
                results = [ab(url) for _ in range(args.runs)]
                rows.append(
                    (name, {k: statistics.median(r[k] for r in results) for k in results[0]})
                )
            finally:
                nginx.terminate()
                nginx.wait(timeout=30)
                run(env, "thumbs", "stop")
                run(env, "web", "stop")
        port = free_port()
        site = f"server {{ listen 127.0.0.1:{port}; root {static}; }}"
        conf = nginx_conf(work / "nginx-static", site)
        nginx = subprocess.Popen(
            ["nginx", "-c", str(conf), "-p", str(conf.parent), "-g", "daemon off;"]
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/thumb.jpg")
            results = [ab(f"http://127.0.0.1:{port}/thumb.jpg") for _ in range(args.runs)]
            reference = {k: statistics.median(r[k] for r in results) for k in results[0]}
        finally:
            nginx.terminate()
            nginx.wait(timeout=30)
        print()
        print(
            f"| through nginx, `ab -n 5000 -c 100` | req/s | p50 ms | p99 ms | failed | ratio to nginx static |  (median of {args.runs})"
        )
        print("|---|---|---|---|---|---|")
        print(
            f"| nginx static thumbnail | {reference['rate']:,.0f} | {reference['p50']:.0f} | {reference['p99']:.0f} | {reference['failed']:.0f} | reference |"
        )
        for name, figures in rows:
            print(
                f"| render_thumbnail, {name} | {figures['rate']:,.0f} | {figures['p50']:.0f} | {figures['p99']:.0f} "
                f"| {figures['failed']:.0f} | {figures['rate'] / reference['rate']:.0%} |"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
