"""Copying rendering settings to other images and to every image of a dataset
(`copyImgRDef_json`, OMERO.web's "paste" and "save to all"): what is saved is what the
source shows the caller; images the caller may not see or annotate, or whose channels do not
fit, are reported False and keep their pictures."""

from __future__ import annotations

from urllib.parse import urlencode

import numpy as np
import pytest
from falcon import testing

from coverslip.home import Home
from coverslip.web import create_app
from coverslip.web.app import CoverslipApp
from tests.helpers import add_image, decode, quantize

RNG = np.random.default_rng(21)
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


class World:
    def __init__(self, app: CoverslipApp) -> None:
        services = app.services
        admin, _ = services.catalog.ensure_local_admin()
        directory = services.auth.directory
        lab = directory.add_group("lab", "read-write")
        closed = directory.add_group("closed", "private")
        ann = directory.add_user("ann", None)
        directory.add_member(lab, ann)
        self.headers = {"X-Auth-Token": services.auth.tokens.create(ann, "tests")[1]}
        self.data = {
            name: RNG.integers(0, 1000, (1, channels, 2, 40, 50), dtype=np.uint16)
            for name, channels in (("a", 2), ("b", 2), ("c", 1), ("p", 2))
        }
        self.ids = {
            name: add_image(app, data, name, group=closed if name == "p" else lab)
            for name, data in self.data.items()
        }
        self.dataset = services.catalog.create_dataset("day 1", admin, lab)
        services.catalog.add_to_dataset(self.dataset, [self.ids[n] for n in ("b", "c", "p")])
        self.client = testing.TestClient(app)

    def copy(self, query: str, form: dict[str, object], headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return self.client.simulate_post(
            f"/webgateway/copyImgRDef_json/?{query}",
            body=urlencode(form, doseq=True),
            headers={**FORM, **(self.headers if headers is None else headers)},
        )

    def picture(self, name: str) -> np.ndarray:
        url = f"/webgateway/render_image/{self.ids[name]}/1/0/?format=png"
        answer = self.client.simulate_get(url, headers=self.headers)
        assert answer.status_code == 200, answer.text
        return decode(answer.content)


@pytest.fixture
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    home = Home(tmp_path_factory.mktemp("copy-rdef"))
    return World(create_app(home.settings({}, {}), home))


def test_save_to_all_images_of_a_dataset(world: World) -> None:
    source = world.ids["a"]
    saved = world.client.simulate_post(
        f"/webgateway/saveImgRDef/{source}/?c=1|100:200$FF0000,-2|0:900$00FF00&m=c&z=2",
        headers=world.headers,
    )
    assert saved.status_code == 200, saved.text
    unchanged_c = world.picture("c")
    answer = world.copy(f"fromid={source}", {"to_type": "dataset", "toids": [world.dataset]})
    assert answer.status_code == 200, answer.text
    # The private image is not listed at all; the one-channel image does not fit.
    assert answer.json == {"True": [world.ids["b"]], "False": [world.ids["c"]]}
    # Image b now shows channel 1 alone, red, over 100..200, on its own plane 2 (z=1 0-based).
    picture = world.picture("b")
    red = quantize(world.data["b"][0, 0, 1], 100, 200)
    np.testing.assert_array_equal(picture[..., 0], red)
    assert not picture[..., 1].any() and not picture[..., 2].any()
    rdef = world.client.simulate_get(
        f"/webgateway/getImgRDef/{world.ids['b']}/", headers=world.headers
    ).json["rdef"]
    assert rdef["c"].startswith("1|100:200$FF0000,-2|0:900$00FF00") and rdef["z"] == 2
    np.testing.assert_array_equal(world.picture("c"), unchanged_c)


def test_paste_to_images_reports_each(world: World) -> None:
    source, private = world.ids["a"], world.ids["p"]
    world.client.simulate_post(
        f"/webgateway/saveImgRDef/{source}/?c=-1,2|0:10$0000FF&m=c", headers=world.headers
    )
    answer = world.copy(f"fromid={source}", {"toids": [world.ids["b"], private, 999_999]})
    assert answer.json == {"True": [world.ids["b"]], "False": [private, 999_999]}
    blue = quantize(world.data["b"][0, 1, 1], 0, 10)
    np.testing.assert_array_equal(world.picture("b")[..., 2], blue)


@pytest.mark.parametrize(
    ("query", "form", "status", "named"),
    [
        ("", {"toids": [1]}, 400, "fromid"),
        ("fromid=x", {"toids": [1]}, 400, "fromid"),
        ("fromid=1", {}, 400, "toids"),
        ("fromid=1", {"toids": ["two"]}, 400, "toids"),
        ("fromid=1", {"toids": [1], "to_type": "plate"}, 400, "to_type"),
        ("fromid=999999", {"toids": [1]}, 404, "Not Found"),
    ],
)
def test_bad_requests_are_named(
    world: World, query: str, form: dict[str, object], status: int, named: str
) -> None:
    answer = world.copy(query, form)
    assert answer.status_code == status and named in answer.text, answer.text


def test_anonymous_callers_copy_nothing(world: World) -> None:
    answer = world.copy(f"fromid={world.ids['a']}", {"toids": [world.ids["b"]]}, headers={})
    assert answer.status_code == 403
    # The source others may not see is a 404, as a missing one.
    hidden = world.copy(f"fromid={world.ids['p']}", {"toids": [world.ids["b"]]})
    assert hidden.status_code == 404
