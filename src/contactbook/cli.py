"""The `contactbook` command: one entry point for every process and chore."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
from rich.table import Table

from contactbook import db, metrics
from contactbook.config import Settings, export_service_urls, get_settings
from contactbook.embedded import EmbeddedServerError, embedded_services
from contactbook.logging import configure_logging, settings_secrets, uvicorn_log_config

app = typer.Typer(
    help="Contact Book: Nimble CRM contacts in your own PostgreSQL, searchable.\n\n"
    "With DATABASE_URL / REDIS_URL unset, every command uses embedded PostgreSQL and Redis "
    "under CONTACTBOOK_HOME (./.contactbook).",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database chores.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("contactbook.cli")

EXIT_UNUSABLE_INPUT = 2


def main() -> None:
    app()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(code)


# --------------------------------------------------------------------------- processes


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run everything on this machine: database, broker, migrations, API, worker and beat.

    The first start imports the sample contacts (or CONTACTBOOK_CSV) when the database
    is empty. Ctrl-C or SIGTERM stops every child cleanly.

    Example: `contactbook serve --port 8080`
    """
    settings = get_settings()
    _observe(settings, "serve", clear_metrics=True)
    logs = settings.contactbook_home.expanduser().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _check_schedule(settings)
    with _services(settings, redis_needed=True) as urls:
        export_service_urls(urls.database_url, urls.redis_url)
        db.upgrade(urls.database_url)
        children = {
            "api": [sys.executable, "-m", "contactbook", "api", "--host", host,
                    "--port", str(port)],
            # Threads, not prefork: a v2 search then reaches its result without a hop
            # between processes: bench/async_search.py (8 clients, 2 cores) measured v2's
            # p50 35-43 ms above v1's with threads, 60-90 ms with prefork. Imports and
            # syncs mostly wait on the database and Nimble, so threads suit them too.
            "worker": [sys.executable, "-m", "contactbook", "worker", "--pool", "threads",
                       "--concurrency", "4"],
            "beat": [sys.executable, "-m", "contactbook", "beat"],
        }  # fmt: skip
        _supervise(children, logs, banner=f"http://{host}:{port}")


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Run the HTTP API alone (applies migrations first).

    Example: `contactbook api --host 0.0.0.0 --port 8000 --workers 2`
    """
    import uvicorn

    from contactbook.asgi import bounded_http

    settings = get_settings()
    _observe(settings, "api")
    with _services(settings, redis_needed=False) as urls:
        export_service_urls(urls.database_url, urls.redis_url)
        db.wait_for_database(urls.database_url)
        db.upgrade(urls.database_url)
        uvicorn.run(
            "contactbook.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            http=bounded_http(settings.max_header_bytes),
            # Every uvicorn worker process applies this: JSON lines, and our access log
            # instead of uvicorn's.
            log_config=uvicorn_log_config(
                settings.log_level, process="api", secrets=settings_secrets(settings)
            ),
            access_log=False,
        )


class WorkerPool(StrEnum):
    prefork = "prefork"
    threads = "threads"
    solo = "solo"


@app.command()
def worker(
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Tasks run at once (processes or threads).")
    ] = 2,
    pool: Annotated[
        WorkerPool,
        typer.Option(
            help="prefork: a process per task slot (time limits work); threads: "
            "lighter, for searches; solo: one task at a time, in this process."
        ),
    ] = WorkerPool.prefork,
    loglevel: Annotated[str | None, typer.Option(help="Log level (default LOG_LEVEL).")] = None,
) -> None:
    """Run a Celery worker: v2 searches, CSV imports and syncs.

    Uses REDIS_URL (or CELERY_BROKER_URL / CELERY_RESULT_BACKEND); with none set, the
    embedded Redis under CONTACTBOOK_HOME. SIGTERM finishes running tasks, then exits.

    Examples: `contactbook worker`, `REDIS_URL=redis://redis:6379/0 contactbook worker
    --concurrency 4`
    """
    settings = get_settings()
    _observe(settings, "worker")
    _check_schedule(settings)
    with _services(settings, redis_needed=True) as urls:
        settings = export_service_urls(urls.database_url, urls.redis_url)
        db.wait_for_database(urls.database_url)
        db.upgrade(urls.database_url)
        from contactbook.tasks import create_celery_app

        celery = create_celery_app(settings)
        celery.worker_main(
            [
                "--quiet",  # no banner on stdout: every line is JSON
                "worker",
                f"--concurrency={concurrency}",
                f"--pool={pool.value}",
                f"--loglevel={(loglevel or settings.log_level).upper()}",
                "--without-gossip",
                "--without-mingle",
                "--hostname=contactbook@%h",
            ]
        )


@app.command()
def beat(
    loglevel: Annotated[str | None, typer.Option(help="Log level (default LOG_LEVEL).")] = None,
) -> None:
    """Run Celery beat: queues the sync on SYNC_SCHEDULE (cron, UTC; default `0 0 * * *`).

    Run exactly one beat per deployment. Its state file is CONTACTBOOK_HOME/beat/schedule.

    Examples: `contactbook beat`, `SYNC_SCHEDULE="30 2 * * *" contactbook beat`
    """
    settings = get_settings()
    _observe(settings, "beat")
    _check_schedule(settings)
    with _services(settings, redis_needed=True) as urls:
        settings = export_service_urls(urls.database_url, urls.redis_url)
        from contactbook.tasks import create_celery_app

        state = settings.contactbook_home.expanduser().resolve() / "beat"
        state.mkdir(parents=True, exist_ok=True)
        celery = create_celery_app(settings)
        log.info("sync schedule: %r (UTC)", settings.sync_schedule)
        celery.start(
            [
                "--quiet",  # no banner on stdout: every line is JSON
                "beat",
                f"--schedule={state / 'schedule'}",
                f"--loglevel={(loglevel or settings.log_level).upper()}",
            ]
        )


# --------------------------------------------------------------------------- data


@app.command("import")
def import_command(
    path: Annotated[Path, typer.Argument(help="The contacts CSV file.", show_default=False)],
) -> None:
    """Import a contacts CSV now; print rows read, inserted, updated and skipped.

    Columns are matched loosely (`First Name`, `first_name`, `e-mail`, `Email (work)`,
    `Phone`, `Mobile`, `Job Title`, `Organization`, `City`, `Tags`...); other columns are
    ignored. Rows with more cells than the header and emails that are not addresses are
    listed with their line numbers (such an email is not imported). Importing the same
    file twice changes nothing. Exit 2, with nothing written, when the file cannot be used.

    Example: `contactbook import ~/Downloads/nimble-contacts.csv`
    """
    from contactbook.contacts.importer import UnusableCsvError, import_csv

    settings = get_settings()
    with _services(settings) as urls:
        db.upgrade(urls.database_url)
        try:
            if out.is_terminal:
                with Progress(
                    "[progress.description]{task.description}",
                    BarColumn(),
                    DownloadColumn(),
                    TimeRemainingColumn(),
                    console=out,
                    transient=True,
                ) as bar:
                    task = bar.add_task(f"importing {path.name}", total=None)

                    def progress(done: int, total: int) -> None:
                        bar.update(task, completed=done, total=total)

                    summary = import_csv(urls.database_url, path, progress=progress)
            else:
                summary = import_csv(urls.database_url, path)
        except UnusableCsvError as error:
            raise _fail(f"{error}\nNothing was imported.", EXIT_UNUSABLE_INPUT) from error
    table = Table(title=f"Imported {path}", show_header=False)
    for label, value in (
        ("rows read", summary.rows_read),
        ("inserted", summary.inserted),
        ("updated", summary.updated),
        ("unchanged", summary.unchanged),
        ("skipped", len(summary.skipped)),
        ("problems", summary.problem_count),
    ):
        table.add_row(label, str(value))
    out.print(table)
    if summary.ignored_columns:
        ignored = summary.ignored_columns
        more = f" … and {len(ignored) - 10} more" if len(ignored) > 10 else ""
        out.print(f"ignored columns: {', '.join(ignored[:10])}{more}", highlight=False)
    shown = summary.skipped[:20]
    for row in shown:
        out.print(f"  skipped line {row.line}: {row.reason}", highlight=False)
    if len(summary.skipped) > len(shown):
        out.print(f"  … and {len(summary.skipped) - len(shown)} more skipped rows")
    for problem in summary.problems[:20]:
        out.print(f"  line {problem.line}: {problem.problem}", highlight=False)
    if summary.problem_count > 20:
        out.print(f"  … and {summary.problem_count - 20} more problems (see import_runs)")


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="What to find.", show_default=False)],
    limit: Annotated[int, typer.Option(min=1, max=100, help="How many results.")] = 20,
    tags: Annotated[
        list[str] | None,
        typer.Option("--tag", help="Only contacts with this tag; repeat for several (all)."),
    ] = None,
    company: Annotated[
        str | None, typer.Option(help="Only contacts of this company (the whole name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON list.")] = False,
) -> None:
    """Search contacts the same way as `GET /api/v1/search`.

    Examples: `contactbook search "tom northwind"`, `contactbook search hendr --json`,
    `contactbook search sales --tag vip --tag emea --company "Acme Corp"`
    """
    from contactbook.contacts.repository import clean_filters
    from contactbook.contacts.schemas import SearchHit
    from contactbook.contacts.search import InvalidSearch, search_contacts

    tags, company = clean_filters(tags, company)
    settings = get_settings()
    with _services(settings) as urls, db.connect(urls.database_url) as conn:
        try:
            page = search_contacts(conn, text, limit=limit, tags=tags, company=company)
        except InvalidSearch as error:
            raise _fail(str(error), EXIT_UNUSABLE_INPUT) from error
    metrics.record_search(len(page.contacts), source="cli")
    hits = [SearchHit.model_validate(c).model_dump(mode="json") for c in page.contacts]
    if as_json:
        typer.echo(json.dumps(hits, ensure_ascii=False))
        return
    if not hits:
        out.print("no contact matches; try fewer or shorter words")
        return
    table = Table(title=f"{page.total} match(es) for {text!r}")
    for column in ("id", "name", "email", "description"):
        table.add_column(column, overflow="fold")
    for hit in hits:
        name = " ".join(p for p in (hit["first_name"], hit["last_name"]) if p)
        table.add_row(str(hit["id"]), name, hit["email"] or "", hit["description"] or "")
    out.print(table)


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.command()
def export(
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.jsonl
    ),
) -> None:
    """Write every live contact to stdout (jsonl: one JSON object per line).

    jsonl has the API's contact fields; CSV has the columns `contactbook import` reads
    back (phones and tags joined with "; "). CSV cells that a spreadsheet would run as a
    formula (starting with =, +, -, @) are prefixed with an apostrophe, which the import
    takes off again.

    Example: `contactbook export --format csv > contacts.csv`
    """
    from contactbook.contacts import export as exporter
    from contactbook.contacts import repository

    write = exporter.write_csv if format is ExportFormat.csv else exporter.write_jsonl
    settings = get_settings()
    with _services(settings) as urls, db.connect(urls.database_url) as conn, conn.transaction():
        write(repository.iter_live_contacts(conn), sys.stdout)


@app.command()
def sync(
    full: Annotated[
        bool, typer.Option("--full", help="Read every contact and remove the vanished ones.")
    ] = False,
) -> None:
    """Sync from the Nimble API now and print what changed.

    Without --full only contacts updated since the last successful sync are read. A sync
    that cannot complete changes nothing and exits 1.

    Example: `NIMBLE_API_KEY=… contactbook sync --full`
    """
    from contactbook.nimble.sync import SyncError, run_sync

    settings = get_settings()
    with _services(settings) as urls:
        db.upgrade(urls.database_url)
        try:
            summary = run_sync(settings, full=full, database_url=urls.database_url)
        except SyncError as error:
            raise _fail(f"{error}\nThe contacts were not changed.") from error
    table = Table(title=f"{summary.mode} sync", show_header=False)
    for label in ("fetched", "inserted", "linked", "updated", "removed", "unchanged"):
        table.add_row(label, str(getattr(summary, label)))
    out.print(table)


@app.command("fake-nimble")
def fake_nimble(
    port: Annotated[int, typer.Option(help="Port to listen on (127.0.0.1).")] = 8765,
    contacts: Annotated[
        int | None, typer.Option(min=0, help="Generate this many realistic records.")
    ] = None,
    data: Annotated[
        Path | None, typer.Option(exists=True, dir_okay=False, help="JSON list of resources.")
    ] = None,
) -> None:
    """Run a local simulator of the Nimble contacts API (for demos and tests).

    It accepts the key in NIMBLE_API_KEY (default `fake-key`). Point Contact Book at it:

    Example: `contactbook fake-nimble --contacts 2000 &` then
    `NIMBLE_API_URL=http://127.0.0.1:8765 NIMBLE_API_KEY=fake-key contactbook sync --full`
    """
    from contactbook.nimble.simulator import DEFAULT_API_KEY, run_simulator

    if contacts is not None and data is not None:
        raise _fail("use --contacts or --data, not both", EXIT_UNUSABLE_INPUT)
    settings = get_settings()
    key = settings.nimble_api_key.get_secret_value() if settings.nimble_api_key else None
    run_simulator(port=port, contacts=contacts, data=data, api_key=key or DEFAULT_API_KEY)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations (serve and api also do this on start).

    Example: `DATABASE_URL=postgresql://… contactbook db upgrade`
    """
    settings = get_settings()
    with _services(settings) as urls:
        db.wait_for_database(urls.database_url)
        db.upgrade(urls.database_url)
    out.print("database is up to date")


# --------------------------------------------------------------------------- operations


@app.command()
def backup(
    to: Annotated[
        Path | None,
        typer.Option("--to", help="Directory for the dump (default CONTACTBOOK_HOME/backups)."),
    ] = None,
) -> None:
    """Dump the database (pg_dump custom format) to `contactbook-YYYYmmddTHHMMSSZ.dump`.

    Prints the file's path. Restore it with `contactbook restore FILE`.

    Examples: `contactbook backup`, `contactbook backup --to /mnt/backups`
    """
    from contactbook.backup import BackupError, backup_database, default_backup_dir

    settings = get_settings()
    with _services(settings) as urls:
        try:
            path = backup_database(
                urls.database_url, to or default_backup_dir(settings.contactbook_home)
            )
        except BackupError as error:
            raise _fail(str(error)) from error
    typer.echo(str(path))


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file `contactbook backup` wrote.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Restore a backup into the database, replacing the tables it contains.

    One transaction: the restore completes or changes nothing. Stop the API and workers
    first.

    Example: `contactbook restore .contactbook/backups/contactbook-20261126T030000Z.dump --yes`
    """
    from contactbook.backup import BackupError, restore_database

    if not yes:
        typer.confirm(f"Replace the database's contents with {file}?", abort=True)
    settings = get_settings()
    with _services(settings) as urls:
        try:
            restore_database(urls.database_url, file)
        except BackupError as error:
            raise _fail(str(error), EXIT_UNUSABLE_INPUT) from error
    out.print(f"restored {file}", highlight=False)


@app.command("healthcheck")
def healthcheck_command(
    role: Annotated[
        str | None,
        typer.Argument(help="api, worker, beat or serve (default: the role running here)."),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(help="URL to GET for api/serve (default http://127.0.0.1:PORT/healthz)."),
    ] = None,
    timeout: Annotated[float, typer.Option(min=0.1, help="Seconds to wait.")] = 5.0,
) -> None:
    """Exit 0 when this machine's ROLE process works, 1 otherwise (Docker HEALTHCHECK).

    Examples: `contactbook healthcheck`, `contactbook healthcheck api --url
    http://127.0.0.1:8000/readyz`
    """
    from contactbook.healthcheck import healthcheck

    raise typer.Exit(healthcheck(role, url=url, timeout=timeout))


# --------------------------------------------------------------------------- helpers


def _observe(settings: Settings, role: str, *, clear_metrics: bool = False) -> None:
    """JSON logs and shared metrics for a long-running role (before anything logs)."""
    configure_logging(settings.log_level, process=role, secrets=settings_secrets(settings))
    metrics_dir = settings.contactbook_home.expanduser().resolve() / "metrics"
    metrics.enable_multiprocess(metrics_dir, clear=clear_metrics)


def _check_schedule(settings: Settings) -> None:
    """Refuse to start with a SYNC_SCHEDULE that is not a cron expression."""
    from contactbook.tasks import InvalidSchedule, parse_sync_schedule

    try:
        parse_sync_schedule(settings.sync_schedule)
    except InvalidSchedule as error:
        raise _fail(str(error), EXIT_UNUSABLE_INPUT) from error


class _services:
    """`embedded_services`, with a readable error instead of a traceback."""

    def __init__(self, settings: Settings, *, redis_needed: bool = False) -> None:
        self._context = embedded_services(settings, redis_needed=redis_needed)

    def __enter__(self):
        try:
            return self._context.__enter__()
        except EmbeddedServerError as error:
            raise _fail(str(error)) from error

    def __exit__(self, *exc_info):
        return self._context.__exit__(*exc_info)


def _supervise(children: dict[str, list[str]], logs: Path, *, banner: str) -> None:
    """Run child processes until one dies or we are told to stop; then stop them all."""
    stopping = threading.Event()

    def request_stop(signum, frame) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    processes: dict[str, subprocess.Popen] = {}
    try:
        for name, command in children.items():
            log_path = logs / f"{name}.log"
            log_file = log_path.open("ab")
            processes[name] = subprocess.Popen(
                command,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=os.environ.copy(),
                start_new_session=True,  # our Ctrl-C is relayed as SIGTERM, once
            )
            log_file.close()
            log.info("started %s (pid %d), logging to %s", name, processes[name].pid, log_path)
        log.info("Contact Book is running on %s (Ctrl-C to stop)", banner)
        while not stopping.is_set():
            for name, process in processes.items():
                if process.poll() is not None:
                    log.error("%s exited with code %d", name, process.returncode)
                    stopping.set()
            stopping.wait(0.5)
    finally:
        log.info("stopping")
        for process in processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + 20
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop in time; killing it", name)
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
