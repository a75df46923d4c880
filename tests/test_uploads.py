"""Accepted uploads are never lost (issue 12 point 6): recorded as queued runs before their
task is sent, sent again when no worker took them, their files removed once they end,
and their status answered from `import_runs` when Redis knows nothing more."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import psycopg
import redis
from celery_support import ADMIN_TOKEN, CELERY_WARNINGS, admin_headers, wait_for_task, wait_until
from conftest import CONTACTBOOK

from contactbook.config import Settings
from contactbook.contacts import runs
from contactbook.contacts.uploads import ORPHAN_AGE, sweep_uploads, uploads_dir
from contactbook.embedded import EmbeddedRedis
from contactbook.worker import create_celery_app
from contactbook.worker_health import worker_answers

pytest_plugins = ["celery_fixtures"]
pytestmark = CELERY_WARNINGS

PEOPLE = (
    "First Name,Last Name,Email\nGrace,Hopper,grace@navy.example\nEdsger,Dijkstra,ewd@tue.example\n"
)


def upload_runs(db_url: str) -> list[dict]:
    with psycopg.connect(db_url, row_factory=psycopg.rows.dict_row) as conn:
        return conn.execute(
            "SELECT id, status, task_id, upload_path, attempts, rows_read, inserted"
            " FROM import_runs WHERE source LIKE 'upload of %%' ORDER BY id"
        ).fetchall()


def lose_every_queued_message(server: EmbeddedRedis) -> int:
    """What a worker dying between BRPOP and kombu recording the message leaves: the
    message in no queue and not in `unacked`."""
    client = redis.Redis(unix_socket_path=str(server.socket))
    lost = 0
    for key in client.scan_iter():
        if client.type(key) == b"list":
            lost += client.llen(key)
            client.delete(key)
    assert client.hlen("unacked") == 0
    client.close()
    return lost


def test_an_upload_whose_task_vanished_is_sent_again_and_imported(
    db_url: str, private_redis: EmbeddedRedis, live_api, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    settings = Settings(_env_file=None, database_url=db_url, redis_url=private_redis.url,
                        contactbook_home=home, upload_resend_after=1)  # fmt: skip
    celery = create_celery_app(settings)
    api = live_api(redis_url=private_redis.url, contactbook_home=home,
                   contactbook_admin_token=ADMIN_TOKEN)  # fmt: skip
    answer = httpx.post(f"{api}/api/v1/imports", headers=admin_headers(),
                        files={"file": ("people.csv", PEOPLE.encode(), "text/csv")})  # fmt: skip
    assert answer.status_code == 202, answer.text
    task_id = answer.json()["task_id"]

    (run,) = upload_runs(db_url)  # recorded before its task was sent
    assert (run["status"], run["task_id"], run["attempts"]) == ("queued", task_id, 0)
    stored = Path(run["upload_path"])
    assert stored.parent == uploads_dir(settings) and stored.exists()

    assert lose_every_queued_message(private_redis) >= 1  # (and the start-up import)
    status_url = f"{api}/api/v1/tasks/{task_id}"
    assert httpx.get(status_url, headers=admin_headers()).json()["status"] == "PENDING"

    # The sweep (beat runs it every minute) sends it again once it has waited too long.
    wait_until(lambda: sweep_uploads(celery, settings)["resent"] == 1, timeout=30,
               what="the sweep to send the upload again")  # fmt: skip
    ours = ("DATABASE_URL", "REDIS_URL", "CELERY_", "CONTACTBOOK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
    env.update(DATABASE_URL=db_url, REDIS_URL=private_redis.url, CONTACTBOOK_HOME=str(home))
    worker = subprocess.Popen([CONTACTBOOK, "worker", "--pool", "threads"], env=env, cwd=home,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)  # fmt: skip
    try:
        wait_until(lambda: worker_answers(celery, timeout=0.5), timeout=60, what="the worker")
        outcome = wait_for_task(status_url, headers=admin_headers(), timeout=60)
    finally:
        worker.terminate()
        worker.wait(timeout=30)
        celery.close()

    assert outcome["status"] == "SUCCESS", outcome
    assert outcome["result"]["inserted"] == 2
    (run,) = upload_runs(db_url)
    assert (run["status"], run["attempts"], run["inserted"]) == ("succeeded", 1, 2)
    assert not stored.exists()
    sweep_uploads(celery, settings)
    assert upload_runs(db_url)[0]["upload_path"] is None


def test_a_refused_upload_leaves_no_run(db_url: str, live_api, tmp_path: Path) -> None:
    from support import free_port

    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    api = live_api(redis_url=nowhere, contactbook_home=tmp_path / "home",
                   contactbook_admin_token=ADMIN_TOKEN)  # fmt: skip
    answer = httpx.post(f"{api}/api/v1/imports", headers=admin_headers(), timeout=30,
                        files={"file": ("people.csv", PEOPLE.encode(), "text/csv")})  # fmt: skip

    assert answer.status_code == 503
    assert upload_runs(db_url) == []
    assert list((tmp_path / "home" / "uploads").iterdir()) == []


def test_the_files_of_ended_uploads_and_old_orphans_are_removed(
    db_url: str, tmp_path: Path
) -> None:
    settings = Settings(_env_file=None, database_url=db_url, contactbook_home=tmp_path)
    folder = uploads_dir(settings)
    folder.mkdir(parents=True)
    files = {name: folder / f"{name}.csv" for name in ("failed", "queued", "old", "new")}
    for file in files.values():
        file.write_text(PEOPLE)
    an_hour_ago = time.time() - ORPHAN_AGE - 60
    os.utime(files["old"], (an_hour_ago, an_hour_ago))
    os.utime(files["queued"], (an_hour_ago, an_hour_ago))  # old, but its run needs it
    with psycopg.connect(db_url, autocommit=True) as conn:
        failed = runs.queue_upload(conn, source="f", path=str(files["failed"]), task_id="t-1")
        runs.give_up(conn, failed, "it failed")
        runs.queue_upload(conn, source="q", path=str(files["queued"]), task_id="t-2")

    done = sweep_uploads(create_celery_app(settings), settings)

    assert (done["removed"], done["orphans_removed"], done["resent"]) == (1, 1, 0)
    assert sorted(p.name for p in folder.iterdir()) == ["new.csv", "queued.csv"]
    with psycopg.connect(db_url) as conn:
        paths = dict(conn.execute("SELECT task_id, upload_path FROM import_runs").fetchall())
    assert paths == {"t-1": None, "t-2": str(files["queued"])}


def test_an_upload_status_answers_from_its_run_once_redis_forgot_it(
    celery_worker, celery_api, db_url: str
) -> None:
    api = celery_api()
    answer = httpx.post(f"{api}/api/v1/imports", headers=admin_headers(),
                        files={"file": ("people.csv", PEOPLE.encode(), "text/csv")})  # fmt: skip
    task_id = answer.json()["task_id"]
    status_url = f"{api}/api/v1/tasks/{task_id}"
    assert wait_for_task(status_url, headers=admin_headers())["status"] == "SUCCESS"

    # The result expired (or Redis restarted without its data): Redis knows nothing.
    backend = celery_worker.backend
    backend.client.delete(backend.get_key_for_task(task_id), f"contactbook-issued-{task_id}")

    answer = httpx.get(status_url, headers=admin_headers())
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["status"], body["error"]) == ("import", "SUCCESS", None)
    assert body["result"]["rows_read"] == 2 and body["result"]["source"].startswith("upload of")
    assert httpx.get(f"{api}/api/v1/tasks/never-issued", headers=admin_headers()).status_code == 404


def test_a_second_delivery_of_an_imported_upload_changes_nothing(
    celery_worker, celery_api, worker_log: Path, db_url: str
) -> None:
    from contactbook.jobs import IMPORT_TASK

    api = celery_api()
    answer = httpx.post(f"{api}/api/v1/imports", headers=admin_headers(),
                        files={"file": ("people.csv", PEOPLE.encode(), "text/csv")})  # fmt: skip
    task_id = answer.json()["task_id"]
    first = wait_for_task(f"{api}/api/v1/tasks/{task_id}", headers=admin_headers())
    (run,) = upload_runs(db_url)
    name = Path(run["upload_path"]).name

    celery_worker.send_task(IMPORT_TASK, task_id=task_id, kwargs={
        "path": run["upload_path"], "source": first["result"]["source"], "remove_after": True,
        "run_id": run["id"]})  # fmt: skip
    wait_until(lambda: f"upload {name} is gone: another delivery imported it"
               in worker_log.read_text(), what="the second delivery")  # fmt: skip

    assert upload_runs(db_url) == [run]  # not claimed again, not rewritten
    # It stored no result of its own: the task still shows the first delivery's.
    assert wait_for_task(f"{api}/api/v1/tasks/{task_id}", headers=admin_headers()) == first


def test_an_upload_that_keeps_failing_or_lost_its_file_is_given_up_not_sent_forever(
    db_url: str, tmp_path: Path
) -> None:
    from contactbook.contacts.uploads import MAX_ATTEMPTS

    settings = Settings(_env_file=None, database_url=db_url, contactbook_home=tmp_path,
                        redis_url="redis://127.0.0.1:1/0")  # fmt: skip
    folder = uploads_dir(settings)
    folder.mkdir(parents=True)
    tried = folder / "tried.csv"
    tried.write_text(PEOPLE)
    with psycopg.connect(db_url, autocommit=True) as conn:
        runs.queue_upload(conn, source="tried", path=str(tried), task_id="t-tried")
        runs.queue_upload(conn, source="gone", path=str(folder / "gone.csv"), task_id="t-gone")
        conn.execute(
            "UPDATE import_runs SET sent_at = now() - interval '1 hour',"
            " attempts = CASE source WHEN 'tried' THEN %s ELSE 0 END",
            (MAX_ATTEMPTS,),
        )

    done = sweep_uploads(create_celery_app(settings), settings)  # no broker needed

    assert (done["given_up"], done["resent"], done["removed"]) == (2, 0, 2)
    with psycopg.connect(db_url) as conn:
        ended = dict(conn.execute("SELECT source, error FROM import_runs WHERE status = 'failed'"))
    assert ended["tried"] == f"gave up after {MAX_ATTEMPTS} attempts; upload the file again"
    assert ended["gone"] == "the uploaded file is gone from uploads/; upload it again"
    assert list(folder.iterdir()) == []
