"""Metrics in one process: render cache hits and misses, rendering stages, requests by route."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from falcon import testing
from prometheus_client import REGISTRY

from coverslip.home import Home
from coverslip.metrics import exposition
from coverslip.web import create_app
from tests.helpers import add_image


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_cache_stages_and_requests_are_counted(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    app = create_app(home.settings({}, {}), home)
    data = np.arange(64 * 64, dtype=np.uint16).reshape(1, 1, 1, 64, 64)
    image_id = add_image(app, data, "m")
    client = testing.TestClient(app)
    path = f"/webgateway/render_image_region/{image_id}/0/0/"
    route = "/webgateway/render_image_region/{iid:id}/{z:nat}/{t:nat}"
    before = {
        "miss": value("coverslip_render_cache_total", result="miss"),
        "hit": value("coverslip_render_cache_total", result="hit"),
        "read": value("coverslip_render_stage_seconds_count", stage="read"),
        "encode": value("coverslip_render_stage_seconds_count", stage="encode"),
        "ok": value("coverslip_requests_total", route=route, status="200"),
    }
    for _ in range(2):
        assert client.simulate_get(path, query_string="region=0,0,32,32").status_code == 200
    assert value("coverslip_render_cache_total", result="miss") == before["miss"] + 1
    assert value("coverslip_render_cache_total", result="hit") == before["hit"] + 1
    assert value("coverslip_render_stage_seconds_count", stage="read") == before["read"] + 1
    assert value("coverslip_render_stage_seconds_count", stage="encode") == before["encode"] + 1
    assert value("coverslip_requests_total", route=route, status="200") == before["ok"] + 2
    body, media_type = exposition()
    assert media_type.startswith("text/plain") and b"coverslip_render_stage_seconds" in body
    assert client.simulate_get("/metrics").status_code == 200  # the test client is this host
