"""Background jobs with real worker processes: uploads return once stored, a worker killed
with SIGKILL mid-import loses no job, jobs that keep failing end killed with nothing left,
lost images are recovered, and jobs are listed, cancelled and retried.

The web side runs in this process (the images API through Falcon's test client); the
workers are `coverslip worker start` processes on the same instance home.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coverslip.deploy import process
from tests.helpers import old_catalog
from tests.test_images_api import Api, npy_bytes

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {"jobs.lease": "2", "jobs.retry_delay": "0.2"}


class Worker:
    """`coverslip worker` processes of one instance home, started and killed for real."""

    def __init__(self, home: Path, **settings: str) -> None:
        self.home = home
        values = {**SETTINGS, **settings}
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("COVERSLIP_")},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "COVERSLIP_HOME": str(home),
            **{"COVERSLIP_" + k.upper().replace(".", "_"): v for k, v in values.items()},
        }

    def cli(self, *args: str, code: int = 0) -> str:
        result = subprocess.run(
            [sys.executable, "-m", "coverslip.cli", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == code, f"{args}: {result.stdout}{result.stderr}"
        return result.stdout

    def start(self) -> int:
        out = self.cli("worker", "start")
        assert "worker: started (PID " in out, out
        return self.pid()

    def pid(self) -> int:
        return int((self.home / "run" / "worker.pid").read_text())

    def kill(self) -> None:
        """SIGKILL the worker: no clean-up runs."""
        pid = self.pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.alive(pid):
            assert time.monotonic() < deadline
            time.sleep(0.02)

    def stop(self) -> None:
        self.cli("worker", "stop")


def api_for(home: Path, **settings: str) -> Api:
    return Api(home, **{**SETTINGS, "jobs.backend": "sqlite", **settings})


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[tuple[Api, Worker]]:
    home = tmp_path / "home"
    api = api_for(home)
    worker = Worker(home, **{"jobs.backend": "sqlite"})
    yield api, worker
    worker.stop()


def wait_status(api: Api, image_id: str, wanted: tuple[str, ...], seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        doc = api.image(image_id)
        if doc["status"] in wanted:
            return doc
        assert time.monotonic() < deadline, f"image {image_id} stuck in {doc['status']}"
        time.sleep(0.05)


def job_of(api: Api, image_id: str) -> dict[str, Any]:
    tasks = api.request("GET", f"/images/{image_id}/tasks").json["tasks"]
    return dict(tasks[0])


def wait_running(api: Api, image_id: str, seconds: float = 60) -> dict[str, Any]:
    """Wait until the image's job runs and has reported some progress."""
    deadline = time.monotonic() + seconds
    while True:
        task = job_of(api, image_id)
        if task["coverslip"]["state"] == "running" and task["coverslip"]["progress"]["done"]:
            return task
        assert task["coverslip"]["state"] in ("queued", "running"), task
        assert time.monotonic() < deadline, task
        time.sleep(0.01)


def pixels_of(api: Api, image_id: str) -> np.ndarray:
    image = api.services.catalog.get_image(int(image_id))
    return api.services.pixels.open(image).read(0, 0, 0, 0, slice(None), slice(None))


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    return np.random.default_rng(5).integers(0, 4000, size=(300, 200), dtype=np.uint16)


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    """An image whose import takes long enough (about a second) to be caught in the middle."""
    rng = np.random.default_rng(11)
    return rng.integers(0, 65535, size=(6144, 6144), dtype=np.uint16)


def test_upload_returns_once_stored_and_a_worker_imports_it(
    instance: tuple[Api, Worker], pixels: np.ndarray
) -> None:
    api, worker = instance
    data = npy_bytes(pixels)
    image_id = api.create(name="cells")
    result = api.put(image_id, data)
    assert result.status_code == 204, result.text
    # No worker yet: the bytes are stored and the import waits on the queue.
    assert api.image(image_id)["status"] == "saving"
    task = api.request("GET", f"/tasks/{result.headers['Coverslip-Job']}").json
    assert (task["status"], task["coverslip"]["state"]) == ("pending", "queued")
    assert task["image_id"] == image_id
    worker.start()
    doc = wait_status(api, image_id, ("active",))
    assert doc["os_hash_value"] == hashlib.sha512(data).hexdigest()
    np.testing.assert_array_equal(pixels_of(api, image_id), pixels)
    task = job_of(api, image_id)
    assert (task["status"], task["coverslip"]["attempts"]) == ("success", 1)
    assert not list(api.home.staging.iterdir())
    status = worker.cli("worker", "status")
    assert status.startswith("worker: RUNNING (PID ") and "0 jobs waiting" in status


def submit(api: Api, how: str, data: bytes, address: str, root: Path) -> str:
    """Start an import of ``data`` the way ``how`` says; return the image id."""
    image_id = api.create(name=how)
    if how == "upload":
        assert api.put(image_id, data).status_code == 204
        return image_id
    if how == "staged":
        assert (
            api.put_stream(image_id, io.BytesIO(data), len(data), where="stage").status_code == 204
        )
        body: dict[str, Any] = {"method": {"name": "glance-direct"}}
    else:
        (root / f"{image_id}.npy").write_bytes(data)
        body = {"method": {"name": "web-download", "uri": f"http://{address}/{image_id}.npy"}}
    assert api.request("POST", f"/images/{image_id}/import", json=body).status_code == 202
    return image_id


def queue_settings(backend: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """Settings of a queue on ``backend``, emptied first (Redis and PostgreSQL are real servers)."""
    if backend == "redis":
        import redis

        url = request.getfixturevalue("redis_url").rsplit("/", 1)[0] + "/3"
        redis.Redis.from_url(url).flushdb()
        return {"jobs.backend": "redis", "jobs.url": url}
    if backend == "postgresql":
        from tests.test_security_ops import fresh_database

        url = fresh_database(request.getfixturevalue("postgres_url"))
        return {"jobs.backend": "postgresql", "jobs.url": url.replace("+psycopg", "")}
    return {"jobs.backend": backend}


@pytest.mark.parametrize(
    ("backend", "how"),
    [
        ("sqlite", "upload"),
        ("sqlite", "staged"),
        ("sqlite", "web-download"),
        ("redis", "upload"),
        ("redis", "web-download"),
        ("postgresql", "upload"),
    ],
)
def test_a_worker_killed_mid_import_loses_no_job(
    tmp_path: Path,
    file_server: tuple[str, Path],
    big: np.ndarray,
    backend: str,
    how: str,
    request: pytest.FixtureRequest,
) -> None:
    address, root = file_server
    home = tmp_path / "home"
    settings = {
        **queue_settings(backend, request),
        "images.web_download_allowed_hosts": "127.0.0.1",
    }
    api = api_for(home, **settings)
    worker = Worker(home, **settings)
    data = npy_bytes(big)
    image_id = submit(api, how, data, address, root)
    worker.start()
    try:
        wait_running(api, image_id)
        worker.kill()
        assert api.image(image_id)["status"] == "importing"
        worker.start()  # its first sweep finds the job's worker dead and queues it again
        doc = wait_status(api, image_id, ("active", "killed"), seconds=120)
        assert doc["status"] == "active", doc
        np.testing.assert_array_equal(pixels_of(api, image_id), big)
        task = job_of(api, image_id)
        assert (task["status"], task["coverslip"]["attempts"]) == ("success", 2)
        assert not list(api.home.staging.iterdir())
        # One pyramid and one kept original: the first attempt's pieces are gone.
        assert [p.name for p in api.home.pixels.iterdir()] == [f"{image_id}.ome.zarr"]
        filesets = [p for p in api.home.originals.iterdir() if p.name.startswith("fileset-")]
        assert len(filesets) == 1
    finally:
        worker.stop()


def test_a_job_whose_every_attempt_is_killed_ends_killed_with_nothing_left(
    tmp_path: Path, big: np.ndarray
) -> None:
    home = tmp_path / "home"
    api = api_for(home, **{"jobs.attempts": "1"})
    worker = Worker(home, **{"jobs.backend": "sqlite", "jobs.attempts": "1"})
    image_id = api.create(name="doomed")
    assert api.put(image_id, npy_bytes(big)).status_code == 204
    worker.start()
    try:
        wait_running(api, image_id)
        worker.kill()
        worker.start()
        doc = wait_status(api, image_id, ("killed",))
        assert "worker stopped" in doc["message"]
        task = job_of(api, image_id)
        assert task["status"] == "failure" and task["coverslip"]["state"] == "failed"
        assert api.leftovers(image_id) == []
        assert not list(api.home.staging.iterdir())
        assert not list(api.home.pixels.iterdir())
        assert not [p for p in api.home.originals.iterdir() if p.name.startswith("fileset-")]
    finally:
        worker.stop()


def test_a_stopped_worker_hands_its_job_to_the_next(tmp_path: Path, big: np.ndarray) -> None:
    home = tmp_path / "home"
    api = api_for(home)
    worker = Worker(home, **{"jobs.backend": "sqlite"})
    image_id = api.create(name="moved")
    bigger = np.concatenate([big, big[::-1]])  # twice as long to import as the others
    assert api.put(image_id, npy_bytes(bigger)).status_code == 204
    worker.start()
    try:
        wait_running(api, image_id)
        pid = worker.pid()
        os.kill(pid, signal.SIGTERM)  # what `worker stop` and systemd send
        while process.alive(pid):
            time.sleep(0.01)
        # The job went back on the queue, not counted as a failure.
        task = job_of(api, image_id)
        assert task["coverslip"]["state"] == "queued" and task["coverslip"]["attempts"] == 0
        worker.start()
        assert wait_status(api, image_id, ("active", "killed"))["status"] == "active"
        np.testing.assert_array_equal(pixels_of(api, image_id), bigger)
    finally:
        worker.stop()


def test_images_left_in_flight_without_a_job_are_recovered(tmp_path: Path) -> None:
    api = api_for(tmp_path / "home", **{"jobs.lease": "2"})
    catalog = api.services.catalog
    saving = int(api.create(name="cut upload"))
    catalog.set_status(saving, "saving", expect=["queued"])
    (api.home.staging / f"{saving}.upload").write_bytes(b"part of an upload")
    importing = int(api.create(name="cut import"))
    catalog.set_status(importing, "importing", expect=["queued"])
    api.home.pyramid(importing).mkdir(parents=True)
    fresh = int(api.create(name="just started"))
    assert api.services.jobs.sweep() == 0  # changed within the last lease: left alone
    time.sleep(2.1)
    catalog.set_status(fresh, "saving", expect=["queued"])
    assert api.services.jobs.sweep() == 2
    assert catalog.get_image(saving).status == "queued"
    assert "interrupted" in api.image(str(saving))["message"]
    assert catalog.get_image(importing).status == "killed"
    assert catalog.get_image(fresh).status == "saving"
    assert api.leftovers(str(saving)) == [] and api.leftovers(str(importing)) == []


def test_an_upload_cut_off_with_its_request_is_recovered(tmp_path: Path) -> None:
    api = api_for(tmp_path / "home", **{"jobs.lease": "2"})
    image_id = api.create()
    jobs = api.services.jobs
    # What a web worker killed while receiving leaves: a receiving job and part of the bytes.
    api.services.catalog.set_status(int(image_id), "saving", expect=["queued"])
    job_id = jobs.record("import_upload", int(image_id), state="receiving")
    (api.home.staging / f"{image_id}.upload").write_bytes(b"half")
    assert jobs.sweep() == 0
    time.sleep(2.1)
    assert jobs.sweep() == 1
    assert api.image(image_id)["status"] == "queued"
    job = api.services.catalog.get_job(job_id)
    assert (job.state, job.message) == ("failed", "the upload was interrupted")
    assert api.leftovers(image_id) == []


def test_cancel_and_retry(
    tmp_path: Path, file_server: tuple[str, Path], pixels: np.ndarray
) -> None:
    address, root = file_server
    home = tmp_path / "home"
    settings = {"jobs.backend": "sqlite", "images.web_download_allowed_hosts": "127.0.0.1"}
    api = api_for(home, **settings)
    worker = Worker(home, **settings)
    # Cancelled while it waits: the image is killed and its bytes are gone at once.
    waiting = api.create(name="waiting")
    job_id = api.put(waiting, npy_bytes(pixels)).headers["Coverslip-Job"]
    assert worker.cli("jobs", "cancel", job_id).strip() == f"job {job_id}: cancelled"
    assert api.image(waiting)["status"] == "killed"
    assert api.leftovers(waiting) == []
    out = worker.cli("jobs", "retry", job_id, code=1)
    assert out == ""
    # A web-download that failed runs again once the file is there.
    image_id = submit(api, "web-download", b"", address, root)
    (root / f"{image_id}.npy").unlink()
    worker.start()
    try:
        assert wait_status(api, image_id, ("killed", "active"))["status"] == "killed"
        job = job_of(api, image_id)
        assert job["status"] == "failure" and "404" in job["message"]
        (root / f"{image_id}.npy").write_bytes(npy_bytes(pixels))
        assert worker.cli("jobs", "retry", job["id"]).strip() == f"job {job['id']}: queued"
        assert wait_status(api, image_id, ("active",))["status"] == "active"
        listed = json.loads(worker.cli("jobs", "list", "--json"))
        assert {row["id"]: row["state"] for row in listed} == {
            job_id: "cancelled",
            job["id"]: "succeeded",
        }
        shown = json.loads(worker.cli("jobs", "show", job["id"]))
        assert shown["progress"]["done"] == shown["progress"]["total"] > 0
    finally:
        worker.stop()


def test_tasks_are_the_callers_own(tmp_path: Path, pixels: np.ndarray) -> None:
    api = Api(tmp_path / "home")
    image_id = api.create()
    job_id = api.put(image_id, npy_bytes(pixels)).headers["Coverslip-Job"]
    mine = api.request("GET", "/tasks").json["tasks"]
    assert [t["id"] for t in mine] == [job_id] and mine[0]["status"] == "success"
    assert mine[0]["coverslip"]["progress"]["done"] > 0
    _bob, bob = api.add_user("bob", api.lab)
    assert api.request("GET", "/tasks", headers=bob).json["tasks"] == []
    assert api.request("GET", f"/tasks/{job_id}", headers=bob).status_code == 404
    anonymous = api.client.simulate_get(f"/api/v2/tasks/{job_id}")
    assert anonymous.status_code == 401
    bad = api.request("GET", "/tasks?status=lost")
    assert bad.status_code == 400 and "status" in bad.text


def test_migration_0006_turns_import_tasks_into_jobs(tmp_path: Path) -> None:
    from coverslip.catalog import Catalog

    url = f"sqlite:///{tmp_path / 'old.sqlite'}"
    old = old_catalog(tmp_path / "old.sqlite", "0005")
    with old.engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO images (id, name, status, owner_id, group_id, created, updated,"
            " properties) VALUES (7, 'i', 'active', 1, 1, '2024-01-01', '2024-01-01', '{}')"
        )
        for task_id, status, method in (
            ("a", "success", '{"import_req": {"method": {"name": "glance-direct"}}}'),
            ("b", "processing", '{"import_req": {"method": {"name": "web-download", "uri": "x"}}}'),
        ):
            conn.exec_driver_sql(
                "INSERT INTO image_tasks (id, image_id, type, status, message, input, user_id,"
                f" created, updated) VALUES ('{task_id}', 7, 'api_image_import', '{status}', '',"
                f" '{method}', 1, '2024-01-01 10:00:00.000000', '2024-01-02 10:00:00.000000')"
            )
    old.close()
    catalog = Catalog(url)
    jobs = {job.id: job for job in catalog.list_jobs()}
    assert (jobs["a"].kind, jobs["a"].state, jobs["a"].images) == (
        "import_staged",
        "succeeded",
        (7,),
    )
    # A task that was running when the old server stopped did not finish.
    assert (jobs["b"].kind, jobs["b"].state, jobs["b"].message) == (
        "import_web",
        "failed",
        "interrupted",
    )
    assert jobs["b"].input["import_req"]["method"]["uri"] == "x"
    catalog.close()
