"""The `contactbook` command: one entry point for every process and chore.

Heavy libraries (FastAPI, Celery, Alembic, SQLAlchemy, psycopg, Redis) are imported inside
the commands that use them, so `contactbook --help` and the Docker healthcheck start in
a fraction of a second; `tests/test_cli.py` checks that `--help` imports none of them.

Errors: every `ContactBookError` a command raises (and a database error a user can
cause) is printed as one `error: …` line by `_Commands.invoke`, with the error's exit
code (1, or 2 for unusable input); nothing a user can cause prints a traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from contactbook.errors import EXIT_UNUSABLE_INPUT, ContactBookError

if TYPE_CHECKING:
    from contactbook.config import Settings
    from contactbook.embedded import ServiceUrls


class _Commands(TyperGroup):
    """Typer's command group, with the project's one mapping of errors to output and exit
    codes, and flags shown as flags (`--json`, not `--json <bool>`) in `--help`."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            problem = _user_error(error)
            if problem is None:
                raise
            raise _fail(str(problem), problem.exit_code) from error

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _plain_flags(command, ctx)
        return command

    def format_help(self, ctx: Any, formatter: Any) -> None:
        _plain_flags(self, ctx)
        super().format_help(ctx, formatter)


def _plain_flags(command: Any, ctx: Any) -> None:
    # Typer shows a flag's Python type as if it took a value (`--json <bool>`), but
    # `--json true` is an error. An empty metavar leaves the column blank.
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""


def _user_error(error: BaseException) -> ContactBookError | None:
    """The ContactBookError a failure stands for, or None for a bug (left to propagate)."""
    if isinstance(error, ContactBookError):
        return error
    psycopg = sys.modules.get("psycopg")  # not imported: it cannot be a database error
    if psycopg is None or not isinstance(error, psycopg.Error):
        return None
    from contactbook import db

    if isinstance(error, db.SCHEMA_MISSING):
        return db.not_migrated(None, error)
    if isinstance(error, psycopg.OperationalError):
        return db.unreachable(None, error)
    if isinstance(error, psycopg.errors.InsufficientPrivilege):
        return ContactBookError(
            f"the database refused: {db.first_line(error)}. DATABASE_URL's user needs "
            "the rights to read and write Contact Book's tables."
        )
    return None


app = typer.Typer(
    cls=_Commands,
    help="Contact Book: Nimble CRM contacts in your own PostgreSQL, searchable.\n\n"
    "With DATABASE_URL / REDIS_URL unset, every command uses embedded PostgreSQL and Redis "
    "under CONTACTBOOK_HOME (unset: the per-user data folder, `~/.local/share/contactbook` "
    "on Linux), wherever it runs. Each data command names the database it uses on stderr.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(cls=_Commands, help="Database chores.", no_args_is_help=True)
app.add_typer(db_app, name="db")

out = Console()
err = Console(stderr=True)
log = logging.getLogger("contactbook.cli")


def main() -> None:
    app()


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


# --------------------------------------------------------------------------- processes


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address the API listens on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port the API listens on.")] = 8000,
) -> None:
    """Run everything on this machine: database, broker, migrations, API, worker and beat.

    The first start imports the sample contacts (or CONTACTBOOK_CSV) when the database
    is empty. Ctrl-C or SIGTERM stops every child cleanly. A child that dies is started
    again (after 1 s, doubling to 30 s); one that dies 5 times within a minute stops
    everything, with exit code 1.

    On a terminal it prints where everything is (URL, data folder, logs) and readable log
    lines; otherwise JSON lines (LOG_FORMAT chooses). A taken port, or another `serve` on
    the same CONTACTBOOK_HOME, is an error before anything starts.

    Example: `contactbook serve --port 8080`
    """
    from contactbook import db
    from contactbook.config import export_service_urls, get_settings
    from contactbook.supervisor import Supervisor

    settings = get_settings()
    terminal = _observe(settings, "serve", clear_metrics=True)
    logs = settings.contactbook_home.expanduser().resolve() / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    _check_schedule(settings)
    with (
        _serving(settings, host, port, summary=terminal),
        _services(settings, redis_needed=True, role="serve") as urls,
    ):
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
        supervisor = Supervisor(children, logs)
        code = supervisor.run(banner=f"http://{host}:{port}")
    if supervisor.failure is not None:
        raise _fail(supervisor.failure, code)


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1, max=64, help="Worker processes (default: one per core).", show_default=False
        ),
    ] = None,
) -> None:
    """Run the HTTP API alone (applies migrations first).

    Each worker process is one event loop serving requests; with one per core the
    server's cores stay busy. (On a machine that also runs PostgreSQL, searches spend
    about as long in PostgreSQL as in the API, so the two share the cores.)

    Example: `contactbook api --host 0.0.0.0 --port 8000 --workers 2`
    """
    import uvicorn

    from contactbook.asgi import bounded_http, connection_cap
    from contactbook.config import export_service_urls, get_settings
    from contactbook.db.replica import prepare_to_serve
    from contactbook.logging import choose_log_format, settings_secrets, uvicorn_log_config
    from contactbook.preflight import ensure_port_free

    settings = get_settings()
    _observe(settings, "api")
    ensure_port_free(host, port, command="api")
    with _services(settings, redis_needed=False, role="api") as urls:
        export_service_urls(urls.database_url, urls.redis_url)
        # With DATABASE_READ_URL it also starts while the primary is away (reads only).
        prepare_to_serve(urls.database_url, settings.database_read_url)
        uvicorn.run(
            "contactbook.api.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers or os.cpu_count() or 1,
            http=bounded_http(
                settings.max_header_bytes,
                head_timeout=settings.http_head_timeout,
                max_connections=connection_cap(settings.http_max_connections),
            ),
            # Every uvicorn worker process applies this: JSON lines, and our access log
            # instead of uvicorn's.
            log_config=uvicorn_log_config(
                settings.log_level,
                process="api",
                secrets=settings_secrets(settings),
                fmt=choose_log_format(settings.log_format),
            ),
            access_log=False,
        )


#: The queues of `jobs.QUEUES`, written out so that `--help` does not import Celery.
WORKER_QUEUES = ("contactbook-search", "contactbook")


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
    queues: Annotated[
        str,
        typer.Option(
            help="Comma-separated queues to consume: contactbook-search (v2 searches), "
            "contactbook (CSV imports and syncs)."
        ),
    ] = ",".join(WORKER_QUEUES),
) -> None:
    """Run a Celery worker: v2 searches, CSV imports and syncs.

    Searches and imports/syncs have a queue each; one worker consumes both by default,
    taking from them in turn. To keep slow searches from ever delaying an upload, run one
    worker per queue (`--queues contactbook-search` and `--queues contactbook`).

    Uses REDIS_URL (or CELERY_BROKER_URL / CELERY_RESULT_BACKEND); with none set, the
    embedded Redis under CONTACTBOOK_HOME. SIGTERM finishes running tasks, then exits.

    Examples: `contactbook worker`, `REDIS_URL=redis://redis:6379/0 contactbook worker
    --concurrency 4`, `contactbook worker --pool threads --queues contactbook-search`
    """
    chosen = [name.strip() for name in queues.split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(WORKER_QUEUES))
    if unknown or not chosen:
        raise typer.BadParameter(
            f"unknown queue {', '.join(unknown) or '(none given)'}: use "
            f"{' and/or '.join(WORKER_QUEUES)}, comma-separated",
            param_hint="--queues",
        )
    from contactbook import db
    from contactbook.config import export_service_urls, get_settings

    settings = get_settings()
    _observe(settings, "worker")
    _check_schedule(settings)
    with _services(settings, redis_needed=True, role="worker") as urls:
        settings = export_service_urls(urls.database_url, urls.redis_url)
        db.wait_for_database(urls.database_url)
        db.upgrade(urls.database_url)
        from contactbook.worker import create_celery_app

        celery = create_celery_app(settings)
        celery.worker_main(
            [
                "--quiet",  # no banner on stdout: every line is JSON
                "worker",
                f"--concurrency={concurrency}",
                f"--pool={pool.value}",
                f"--queues={','.join(chosen)}",
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
    from contactbook.config import export_service_urls, get_settings

    settings = get_settings()
    _observe(settings, "beat")
    _check_schedule(settings)
    with _services(settings, redis_needed=True, role="beat") as urls:
        settings = export_service_urls(urls.database_url, urls.redis_url)
        from contactbook.worker import create_celery_app

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
    from rich.table import Table

    from contactbook import db
    from contactbook.contacts.importer import UnusableCsvError, import_csv

    settings = _data_command_settings()
    with _services(settings) as urls:
        db.upgrade(urls.database_url)
        started = time.monotonic()
        try:
            if out.is_terminal:
                with _ImportProgress(path.name) as progress:
                    summary = import_csv(urls.database_url, path, progress=progress)
            else:
                summary = import_csv(urls.database_url, path)
        except UnusableCsvError as error:
            raise _fail(f"{error}\nNothing was imported.", EXIT_UNUSABLE_INPUT) from error
        seconds = time.monotonic() - started
    rate = f"{summary.rows_read / seconds:,.0f} rows/s" if seconds > 0 else "-"
    table = Table(title=f"Imported {path}", show_header=False)
    for label, value in (
        ("time", f"{seconds:.1f} s ({rate})"),
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
        unlisted = summary.ignored_column_count - min(len(ignored), 10)
        more = f" … and {unlisted} more" if unlisted > 0 else ""
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


class _ImportProgress:
    """One bar per phase of an import, each with its ETA: reading the file (bytes), then
    indexing (an empty table) or merging (steps). The database's work after the last
    byte is its own phase, so no bar sits at 100% while the import goes on."""

    LABELS = {"reading": "reading {name}", "indexing": "indexing", "merging": "merging"}

    def __init__(self, name: str) -> None:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TimeRemainingColumn

        self._name = name
        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            TaskProgressColumn(),
            TimeRemainingColumn(),
            console=out,
            transient=True,
        )
        self._tasks: dict[str, tuple[Any, int]] = {}  # phase: (its bar, its total)

    def __enter__(self) -> _ImportProgress:
        self._bar.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self._bar.__exit__(*exc_info)

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self._tasks:
            for earlier, (task, earlier_total) in self._tasks.items():  # those phases are over
                self._bar.update(task, completed=earlier_total)
                self._tasks[earlier] = (task, earlier_total)
            label = self.LABELS.get(phase, phase).format(name=self._name)
            self._tasks[phase] = (self._bar.add_task(label, total=total or None), total)
        task, _ = self._tasks[phase]
        self._tasks[phase] = (task, total)
        self._bar.update(task, completed=done, total=total or None)


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
    from rich.table import Table

    from contactbook import db, metrics
    from contactbook.contacts.search import search_contacts

    settings = _data_command_settings()
    with _services(settings) as urls, db.connect(urls.database_url) as conn:
        # An unusable text is an InvalidSearch: the command group prints it, exit 2.
        page = search_contacts(conn, text, limit=limit, tags=tags, company=company)
    metrics.record_search(len(page.contacts), source="cli")
    hits = page.contacts
    if as_json:
        typer.echo(json.dumps(hits, ensure_ascii=False))
        return
    if not hits:
        out.print("no contact matches; try fewer or shorter words")
        return
    table = Table(title=f"{_count(page.total, 'match', 'matches')} for {text!r}")
    table.add_column("id", no_wrap=True)
    table.add_column("name", overflow="fold")
    # An address is one token: never broken across lines (the name and the bio give way).
    table.add_column("email", no_wrap=True, min_width=12)
    table.add_column("description", overflow="fold", ratio=1)
    for hit in hits:
        name = " ".join(p for p in (hit["first_name"], hit["last_name"]) if p)
        table.add_row(str(hit["id"]), name, hit["email"] or "", hit["description"] or "")
    out.print(table)


def _count(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


class ExportFormat(StrEnum):
    jsonl = "jsonl"
    csv = "csv"


@app.command()
def export(
    format: Annotated[ExportFormat, typer.Option("--format", help="Output format.")] = (
        ExportFormat.jsonl
    ),
    removed: Annotated[
        bool,
        typer.Option("--removed", help="The contacts a full sync removed, not the live ones."),
    ] = False,
    bom: Annotated[
        bool,
        typer.Option(
            "--bom", help="Start the CSV with a UTF-8 byte order mark (for Excel on Windows)."
        ),
    ] = False,
) -> None:
    """Write every live contact to stdout (jsonl: one JSON object per line).

    jsonl has the API's contact fields; CSV has the columns `contactbook import` reads
    back (phones and tags joined with "; "). CSV cells that a spreadsheet would run as a
    formula (starting with =, +, -, @) are prefixed with an apostrophe, which the import
    takes off again. `--removed` writes the contacts a full sync removed instead (bring
    them back with `contactbook undelete`).

    Examples: `contactbook export --format csv --bom > contacts.csv`,
    `contactbook export --removed`
    """
    from contactbook import db
    from contactbook.contacts import export as exporter
    from contactbook.contacts import removed as removed_contacts
    from contactbook.contacts import repository

    if bom and format is not ExportFormat.csv:
        raise _fail("--bom is for --format csv (a BOM would break JSON lines)", EXIT_UNUSABLE_INPUT)
    write = exporter.write_csv if format is ExportFormat.csv else exporter.write_jsonl
    rows = removed_contacts.iter_removed_contacts if removed else repository.iter_live_contacts
    settings = _data_command_settings()
    with _services(settings) as urls, db.connect(urls.database_url) as conn, conn.transaction():
        if bom:
            sys.stdout.write("\ufeff")
        write(rows(conn), sys.stdout)


@app.command()
def undelete(
    ids: Annotated[
        list[int] | None,
        typer.Argument(help="Ids of removed contacts to bring back.", show_default=False),
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Bring back every removed contact.")] = False,
) -> None:
    """Bring back contacts a full sync removed (soft-deleted because Nimble no longer
    listed them).

    List them first with `contactbook export --removed`. A contact Nimble still lacks is
    removed again by the next full sync unless Nimble lists it again.

    Examples: `contactbook undelete 12 15`, `contactbook undelete --all`
    """
    from contactbook import db
    from contactbook.contacts.removed import undelete_contacts

    if every == bool(ids):
        raise _fail("give the ids of the contacts to bring back, or --all", EXIT_UNUSABLE_INPUT)
    settings = _data_command_settings()
    with _services(settings) as urls, db.connect(urls.database_url, autocommit=True) as conn:
        back = undelete_contacts(conn, None if every else ids)
    if not back:
        out.print("no removed contact to bring back (see `contactbook export --removed`)")
        return
    listed = ", ".join(str(i) for i in back[:20]) + (" …" if len(back) > 20 else "")
    out.print(f"brought back {_count(len(back), 'contact', 'contacts')}: {listed}")
    if ids and len(back) < len(set(ids)):
        missed = sorted(set(ids) - set(back))
        out.print(f"not removed contacts, left alone: {', '.join(map(str, missed))}")


@app.command()
def sync(
    full: Annotated[
        bool, typer.Option("--full", help="Read every contact and remove the vanished ones.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; write nothing.")
    ] = False,
    allow_removals: Annotated[
        bool,
        typer.Option(
            "--allow-removals",
            help="Let a full sync remove more than SYNC_MAX_REMOVALS_PERCENT of the contacts.",
        ),
    ] = False,
) -> None:
    """Sync from the Nimble API now and print what changed.

    Without --full only contacts updated since the last successful sync are read. A sync
    that cannot complete changes nothing and exits 1; so does a full sync that would
    remove more than SYNC_MAX_REMOVALS_PERCENT (default 10) of the Nimble-linked
    contacts, unless --allow-removals. With --dry-run it reads everything, works out
    every change, then rolls it all back.

    Examples: `NIMBLE_API_KEY=… contactbook sync --full --dry-run`,
    `contactbook sync --full --allow-removals`
    """
    from rich.table import Table

    from contactbook import db
    from contactbook.nimble.sync import SyncError, TooManyRemovals, run_sync

    settings = _data_command_settings()
    with _services(settings) as urls:
        if not dry_run:  # a dry run writes nothing, migrations included
            db.upgrade(urls.database_url)
        try:
            with _progress_bar("reading Nimble", unit="pages") as progress:
                summary = run_sync(
                    settings,
                    full=full,
                    database_url=urls.database_url,
                    dry_run=dry_run,
                    allow_removals=allow_removals,
                    progress=progress,
                )
        except SyncError as error:
            suffix = (
                "" if isinstance(error, TooManyRemovals) else "\nThe contacts were not changed."
            )
            raise _fail(f"{error}{suffix}", error.exit_code) from error
    table = Table(title=f"{summary.mode} sync", show_header=False)
    for label in ("fetched", "inserted", "linked", "updated", "removed", "unchanged"):
        table.add_row(label, str(getattr(summary, label)))
    out.print(table)
    if dry_run:
        out.print("dry run: nothing was written; run it without --dry-run to apply these changes")


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
    from contactbook.config import get_settings
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
    from contactbook import db

    settings = _data_command_settings()
    with _services(settings) as urls:
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
    from contactbook.backup import backup_database, default_backup_dir

    settings = _data_command_settings()
    with _services(settings) as urls, _progress_bar("dumping", unit="bytes") as progress:
        path = backup_database(
            urls.database_url,
            to or default_backup_dir(settings.contactbook_home),
            progress=progress,
        )
    typer.echo(str(path))


@app.command()
def restore(
    file: Annotated[Path, typer.Argument(help="A file `contactbook backup` wrote.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Restore a backup into the database, replacing the tables it contains.

    One transaction: the restore completes or changes nothing. Stop the API and workers
    first. Without --yes it asks before replacing anything.

    Example: `contactbook restore
    ~/.local/share/contactbook/backups/contactbook-20261126T030000Z.dump --yes`
    """
    from contactbook.backup import restore_database

    if not yes:
        typer.confirm(f"Replace the database's contents with {file}?", abort=True)
    settings = _data_command_settings()
    with _services(settings) as urls, _progress_bar("restoring", unit="objects") as progress:
        restore_database(urls.database_url, file, progress=progress)
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


def _observe(settings: Settings, role: str, *, clear_metrics: bool = False) -> bool:
    """Logs (JSON, or text on a terminal: LOG_FORMAT) and shared metrics for a long-running
    role, before anything logs. Returns whether the logs are for a person (text)."""
    from contactbook import metrics
    from contactbook.logging import choose_log_format, configure_logging, settings_secrets

    fmt = choose_log_format(settings.log_format)
    configure_logging(settings.log_level, process=role, secrets=settings_secrets(settings), fmt=fmt)
    metrics_dir = settings.contactbook_home.expanduser().resolve() / "metrics"
    metrics.enable_multiprocess(metrics_dir, clear=clear_metrics)
    return fmt == "text"


def _data_command_settings() -> Settings:
    """The settings, and logging for a short command: warnings and errors as plain lines
    on stderr (secrets masked), written wherever stderr is at that moment, so a progress
    bar keeps its place below them."""
    from contactbook.config import get_settings
    from contactbook.logging import TextLineFormatter, settings_secrets

    settings = get_settings()
    handler = _StderrHandler(level=logging.WARNING)
    handler.setFormatter(TextLineFormatter(secrets=settings_secrets(settings), timestamps=False))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    return settings


class _StderrHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # logging must never break the command
            self.handleError(record)


@contextlib.contextmanager
def _progress_bar(what: str, *, unit: str) -> Iterator[Callable[..., None] | None]:
    """A progress callback drawing a bar on stderr when it is a terminal, else None (on a
    pipe nothing is shown). `unit`: pages (done/total), bytes (no total) or objects."""
    if not err.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    amount = DownloadColumn() if unit == "bytes" else MofNCompleteColumn()
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), amount]
    if unit != "bytes":
        columns.append(TextColumn(unit))
    columns.append(TimeElapsedColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(what, total=None)

        def progress(done: int, total: int | None, phase: str | None = None) -> None:
            description = phase or what
            if unit == "pages" and total and done >= total:
                description = "applying the changes"  # every page is in; the merge ends
            bar.update(task, completed=done, total=total, description=description)

        yield progress


@contextlib.contextmanager
def _serving(settings: Settings, host: str, port: int, *, summary: bool) -> Iterator[None]:
    """What `serve` holds and checks before it starts anything: the data folder's lock
    (one serve per CONTACTBOOK_HOME), the port, a configured Redis; then the summary."""
    from contactbook.preflight import check_redis, ensure_port_free, serve_lock

    home = settings.contactbook_home.expanduser().resolve()
    with serve_lock(home):
        ensure_port_free(host, port, command="serve")
        if settings.redis_url:
            check_redis(settings.redis_url)
        if summary:
            _print_serve_summary(settings, f"http://{host}:{port}", home)
        yield


def _print_serve_summary(settings: Settings, url: str, home: Path) -> None:
    from rich.table import Table

    table = Table.grid(padding=(0, 2))
    table.add_row("[bold]URL[/]", f"{url}  (API docs: {url}/docs)")
    table.add_row("[bold]data folder[/]", escape(str(home)))
    table.add_row("[bold]database[/]", escape(_database_from_settings(settings, home)))
    table.add_row("[bold]logs[/]", escape(f"{home / 'logs'}/{{api,worker,beat}}.log"))
    table.add_row("[bold]stop[/]", "Ctrl-C")
    err.print("[bold]Contact Book[/] is starting", highlight=False)
    err.print(table, highlight=False)


def _database_from_settings(settings: Settings, home: Path) -> str:
    if settings.database_url is None:
        return f"embedded PostgreSQL in {home / 'postgres'}"
    from contactbook.db import describe_database

    return f"{describe_database(settings.database_url)} (DATABASE_URL)"


def _check_schedule(settings: Settings) -> None:
    """Refuse to start with a SYNC_SCHEDULE that is not a cron expression."""
    from contactbook.worker import InvalidSchedule, parse_sync_schedule

    try:
        parse_sync_schedule(settings.sync_schedule)
    except InvalidSchedule as error:
        raise _fail(str(error), EXIT_UNUSABLE_INPUT) from error


@contextlib.contextmanager
def _services(
    settings: Settings, *, redis_needed: bool = False, role: str | None = None
) -> Iterator[ServiceUrls]:
    """`embedded_services`, naming the database in use: on stderr for a data command (role
    None), in the log for a long-running role. A configured database is checked first,
    so a wrong DATABASE_URL fails at once with a message saying so (api and worker wait
    for it instead, as they start beside it in compose)."""
    from contactbook import db
    from contactbook.embedded import embedded_services

    with embedded_services(settings, redis_needed=redis_needed) as urls:
        if urls.embedded_database is not None:
            where = f"the embedded PostgreSQL in {urls.embedded_database}"
        else:
            where = f"{db.describe_database(urls.database_url)} (DATABASE_URL)"
        if role is None:
            err.print(f"database: {escape(where)}", highlight=False, soft_wrap=True)
        else:
            log.info("database: %s", where)
        if urls.embedded_database is None and role in (None, "serve"):
            db.check_connection(urls.database_url)
        yield urls
