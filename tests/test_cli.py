"""The `contactbook` commands, run in this process with Typer's CliRunner (the `cli`
fixture); the tests of `serve`, the deployment and the signals run the installed entry
point in a process of its own."""

from __future__ import annotations

import csv
import io
import json

import pytest

from contactbook.contacts.schemas import Contact

HEADER = "First Name,Last Name,Email,Description\n"
PEOPLE = HEADER + (
    "Tom,Brooks,tbrooks@northwind.io,Negotiates freight contracts\n"
    'Ada,Hendricks,ada@lumen.dev,=HYPERLINK("http://evil")\n'
    ",,,\n"
)


def test_every_command_has_help_with_an_example(cli):
    for command in (["serve"], ["api"], ["import"], ["search"], ["export"], ["db", "upgrade"]):
        result = cli(*command, "--help")
        assert result.exit_code == 0, result.output
        assert "Example" in result.stdout, command


def test_import_prints_a_summary_with_skipped_lines(cli, write_csv):
    result = cli("import", str(write_csv(PEOPLE)))

    assert result.exit_code == 0, result.output
    assert "rows read" in result.stdout and "inserted" in result.stdout
    assert "skipped line 4: no first name, last name, email, description, phone" in result.stdout


def test_import_prints_the_problems_with_their_lines(cli, write_csv):
    content = HEADER + "Bob,Stone,EMEA,Sales\nCy,Lovelace, Ada,cy@example.org,Shifted\n"
    result = cli("import", str(write_csv(content)))

    assert result.exit_code == 0, result.output
    assert "line 2: the email 'EMEA' is not an address: not imported" in result.stdout
    assert "line 3: 1 more cell than the header (from 'Shifted')" in result.stdout
    assert "line 3: the email 'Ada' is not an address" in result.stdout


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"Fax,Pager\n1,2\n", "column"),
        ("Name\nFran\xe7ois\n".encode("latin-1"), "UTF-8"),
    ],
)
def test_an_unusable_file_exits_2_and_writes_nothing(cli, write_csv, conn, content, fragment):
    result = cli("import", str(write_csv(content)))

    assert result.exit_code == 2
    assert fragment in result.stderr
    assert "Nothing was imported" in result.stderr
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 0


def test_a_missing_path_exits_2(cli, tmp_path):
    result = cli("import", str(tmp_path / "missing.csv"))

    assert result.exit_code == 2
    assert "does not exist" in result.stderr


def test_search_json_is_the_api_answer(cli, write_csv, live_api):
    import httpx

    cli("import", str(write_csv(PEOPLE)))
    result = cli("search", "tom brooks", "--json")
    api_answer = httpx.get(f"{live_api()}/api/v1/search", params={"text": "tom brooks"}).json()

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == api_answer
    assert api_answer[0]["email"] == "tbrooks@northwind.io"


def test_search_prints_a_table_or_a_hint(cli, write_csv):
    cli("import", str(write_csv(PEOPLE)))

    found = cli("search", "hendricks")
    missing = cli("search", "nobody-like-this")
    blank = cli("search", " ")

    assert "Hendricks" in found.stdout
    assert "no contact matches" in missing.stdout
    assert blank.exit_code == 2 and "blank" in blank.stderr


def test_export_jsonl_has_the_api_fields(cli, write_csv):
    cli("import", str(write_csv(PEOPLE)))

    result = cli("export")

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["last_name"] for r in rows] == ["Brooks", "Hendricks"]
    assert set(rows[0]) == set(Contact.model_fields)  # the API's contact, key for key
    assert rows[0]["phones"] == [] and rows[0]["tags"] == [] and rows[0]["phone"] is None


def test_export_csv_neutralises_formulas(cli, write_csv):
    cli("import", str(write_csv(PEOPLE)))

    result = cli("export", "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[1]["description"] == '\'=HYPERLINK("http://evil")'


def test_db_upgrade_is_idempotent(cli):
    assert cli("db", "upgrade").exit_code == 0
    assert cli("db", "upgrade").exit_code == 0


def test_sync_prints_its_figures_and_fails_without_changing_data(cli, write_csv, db_url):
    from nimble_fixtures import API_KEY, people, simulator_server
    from support import dump_contacts

    with simulator_server() as simulator:
        simulator.reset(people(3))
        env = {"NIMBLE_API_URL": simulator.url, "NIMBLE_API_KEY": API_KEY}

        first = cli("sync", "--full", env=env)
        before = dump_contacts(db_url)
        wrong_key = cli("sync", env={**env, "NIMBLE_API_KEY": "not-the-key-123"})

    assert first.exit_code == 0, first.output
    assert "inserted" in first.stdout and "3" in first.stdout
    assert wrong_key.exit_code == 1
    assert "NIMBLE_API_KEY" in wrong_key.stderr
    assert "not-the-key-123" not in wrong_key.stdout + wrong_key.stderr
    assert "were not changed" in wrong_key.stderr
    assert dump_contacts(db_url) == before


def test_sync_without_a_key_says_so(cli):
    result = cli("sync")

    assert result.exit_code == 1
    assert "NIMBLE_API_KEY is not set" in result.stderr


def test_fake_nimble_refuses_both_sources(cli, tmp_path):
    data = tmp_path / "people.json"
    data.write_text("[]")

    result = cli("fake-nimble", "--contacts", "3", "--data", str(data))

    assert result.exit_code == 2
    assert "not both" in result.stderr


def test_import_names_at_most_ten_ignored_columns(cli, write_csv):
    extra = ",".join(f"Extra {i}" for i in range(30))
    path = write_csv(f"Email,{extra}\nann@example.org{',' * 30}\n")

    result = cli("import", str(path))

    assert result.exit_code == 0, result.output
    assert "Extra 9 … and 20 more" in result.stdout
    assert "Extra 10," not in result.stdout


# --------------------------------------------------------------------------- in process
# A real process is used only where the process itself is what is tested.


def finished_cleanly(result) -> bool:
    """No traceback: the command ended by an exit code, not an uncaught exception."""
    return result.exception is None or isinstance(result.exception, SystemExit)


def unused_port() -> int:
    from support import free_port

    return free_port()


# --- one database, wherever a command runs (issue 16, point 1)


def test_the_data_folder_is_the_per_user_one_whatever_the_current_directory(tmp_path, monkeypatch):
    from contactbook.config import Settings

    monkeypatch.delenv("CONTACTBOOK_HOME", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    homes = set()
    for folder in ("Downloads", "projects/contactbook"):
        (tmp_path / folder).mkdir(parents=True)
        monkeypatch.chdir(tmp_path / folder)
        homes.add(Settings(_env_file=None).contactbook_home)

    assert homes == {tmp_path / "xdg" / "contactbook"}


def test_an_import_elsewhere_uses_the_one_embedded_database_and_says_so(
    cli, write_csv, tmp_path, monkeypatch
):
    downloads = tmp_path / "Downloads"
    downloads.mkdir()
    people = write_csv(PEOPLE, name="people.csv")
    env = {"DATABASE_URL": None, "CONTACTBOOK_HOME": None, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    monkeypatch.chdir(downloads)

    imported = cli("import", str(people), env=env)
    exported = cli("export", env=env)

    assert imported.exit_code == 0, imported.output
    postgres = tmp_path / "xdg" / "contactbook" / "postgres"
    assert imported.stderr.splitlines()[0] == f"database: the embedded PostgreSQL in {postgres}"
    assert not (downloads / ".contactbook").exists()
    assert [json.loads(line)["last_name"] for line in exported.stdout.splitlines()] == [
        "Brooks",
        "Hendricks",
    ]


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password in it (the embedded test server accepts any), and that password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        return url, parts.password
    password = "s3cret-pw-4417"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:{password}@{host}")), password


@pytest.mark.parametrize(
    "command",
    [["search", "tom"], ["export"], ["import", "people.csv"], ["db", "upgrade"], ["sync"],
     ["undelete", "--all"], ["backup", "--to", "dumps"]],
    ids=lambda command: command[0],
)  # fmt: skip
def test_every_data_command_names_its_database_first_never_the_password(
    cli, db_url, write_csv, command
):
    from urllib.parse import urlsplit

    write_csv(PEOPLE, name="people.csv")
    url, password = with_password(db_url)
    parts = urlsplit(url)

    result = cli(*command, env={"DATABASE_URL": url})

    first = result.stderr.splitlines()[0]
    assert first.startswith(f'database: PostgreSQL database "{parts.path.lstrip("/")}" on ')
    assert "(DATABASE_URL)" in first
    assert password not in result.output + result.stderr
    assert finished_cleanly(result), result.exception


# --- failures that say what to do (point 3)


@pytest.mark.parametrize(
    "command",
    [["search", "tom"], ["export"], ["import", "people.csv"], ["db", "upgrade"], ["sync"],
     ["undelete", "--all"], ["backup"], ["restore", "--yes", "people.csv"]],
    ids=lambda command: command[0],
)  # fmt: skip
def test_a_wrong_database_url_is_one_message_naming_the_setting(cli, write_csv, command):
    write_csv(PEOPLE, name="people.csv")
    url = f"postgresql://nobody:pw-never-shown@127.0.0.1:{unused_port()}/contacts"

    result = cli(*command, env={"DATABASE_URL": url, "NIMBLE_API_KEY": "some-key-1234"})

    assert result.exit_code == 1
    assert finished_cleanly(result), result.exception
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert "DATABASE_URL" in errors[0] and "contacts" in errors[0]
    assert "pw-never-shown" not in result.output + result.stderr


def test_a_database_url_that_is_not_one_says_how_to_write_it(cli):
    result = cli("search", "tom", env={"DATABASE_URL": "mysql://root:pw-never-shown@db/crm"})

    assert result.exit_code == 1 and finished_cleanly(result), result.exception
    assert "postgresql://user:password@host:5432/dbname" in result.stderr
    assert "pw-never-shown" not in result.stderr


@pytest.fixture
def unmigrated_database(database_url: str):
    """A new database on the test server with no schema at all."""
    import uuid
    from urllib.parse import urlsplit, urlunsplit

    import psycopg
    from psycopg import sql

    name = f"unmigrated_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(urlsplit(database_url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.mark.parametrize("command", [["search", "tom"], ["export"]], ids=lambda c: c[0])
def test_a_never_migrated_database_says_to_run_db_upgrade(cli, unmigrated_database, command):
    result = cli(*command, env={"DATABASE_URL": unmigrated_database})

    assert result.exit_code == 1 and finished_cleanly(result), result.exception
    assert "run `contactbook db upgrade`" in result.stderr


def test_an_import_into_a_never_migrated_database_migrates_it(cli, unmigrated_database, write_csv):
    result = cli("import", str(write_csv(PEOPLE)), env={"DATABASE_URL": unmigrated_database})
    found = cli("search", "brooks", "--json", env={"DATABASE_URL": unmigrated_database})

    assert result.exit_code == 0, result.output
    assert [hit["last_name"] for hit in json.loads(found.stdout)] == ["Brooks"]


def test_a_setting_that_does_not_parse_is_named_with_exit_2(cli):
    result = cli("search", "tom", env={"DB_POOL_SIZE": "lots", "LOG_FORMAT": "xml"})

    assert result.exit_code == 2 and finished_cleanly(result), result.exception
    assert "DB_POOL_SIZE" in result.stderr and "LOG_FORMAT" in result.stderr


# --- a quick CLI (point 10)

# (pydantic is not among them: Typer itself imports it to convert a command's options.)
HEAVY_MODULES = {
    "fastapi", "starlette", "celery", "kombu", "alembic", "sqlalchemy", "psycopg",
    "psycopg_pool", "redis", "uvicorn", "httpx", "prometheus_client", "pydantic_settings",
}  # fmt: skip


@pytest.mark.parametrize("words", [[], ["sync"], ["serve"], ["db", "upgrade"]])
def test_help_imports_no_heavy_library(words):
    import subprocess
    import sys

    probe = (
        "import sys\n"
        "from contactbook.cli import main\n"
        f"sys.argv = ['contactbook', *{words!r}, '--help']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('IMPORTED', sorted({m.split('.')[0] for m in sys.modules}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    imported = set(json.loads(result.stdout.rsplit("IMPORTED ", 1)[1].replace("'", '"')))

    assert "Usage" in result.stdout
    assert imported & HEAVY_MODULES == set()


# --- rough edges (point 11)


def test_flags_are_shown_as_flags_in_help(cli):
    for command in (["search"], ["sync"], ["export"], ["restore"], []):
        result = cli(*command, "--help")
        assert result.exit_code == 0
        assert "<bool>" not in result.stdout, command
    assert "--json" in cli("search", "--help").stdout


def test_the_match_count_says_match_or_matches(cli, write_csv):
    cli("import", str(write_csv(PEOPLE)))
    cli("import", str(write_csv(f"{HEADER}Ann,Smith,ann@smith.example,\nBob,Smith,,\n")))

    one = cli("search", "hendricks")
    two = cli("search", "smith")

    assert "1 match for 'hendricks'" in one.stdout
    assert "2 matches for" in two.stdout


def test_an_email_is_never_broken_across_lines_at_80_columns(cli, write_csv, monkeypatch):
    from rich.console import Console

    from contactbook import cli as cli_module

    address = "bartholomew.featherstonehaugh@northwind-logistics.example"
    bio = "Negotiates freight contracts across three continents for the northern fleet."
    cli("import", str(write_csv(f"{HEADER}Bartholomew,Featherstonehaugh,{address},{bio}\n")))
    monkeypatch.setattr(cli_module, "out", Console(width=80, no_color=True))

    result = cli("search", "featherstonehaugh")

    assert result.exit_code == 0, result.output
    assert address in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80


def test_a_sync_error_is_printed_once(cli):
    from nimble_fixtures import people, simulator_server

    with simulator_server() as simulator:
        simulator.reset(people(3))
        env = {"NIMBLE_API_URL": simulator.url, "NIMBLE_API_KEY": "not-the-key-123"}
        result = cli("sync", env=env)

    assert result.exit_code == 1 and finished_cleanly(result), result.exception
    assert result.stderr.count("refused the API key") == 1, result.stderr
    assert "not-the-key-123" not in result.stderr


def test_fake_nimble_on_a_taken_port_says_so_before_printing_any_address(cli):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = cli("fake-nimble", "--port", str(port), "--contacts", "1")

    assert result.exit_code == 1 and finished_cleanly(result), result.exception
    assert "Nimble simulator" not in result.stdout
    assert f"port {port}" in result.stderr and "--port" in result.stderr


def test_export_csv_can_start_with_a_bom_for_excel(cli, write_csv):
    cli("import", str(write_csv(PEOPLE)))

    with_bom = cli("export", "--format", "csv", "--bom")
    without = cli("export", "--format", "csv")
    jsonl = cli("export", "--bom")

    assert with_bom.stdout.startswith("\ufeffid,nimble_id,")
    assert with_bom.stdout.removeprefix("\ufeff") == without.stdout
    assert not without.stdout.startswith("\ufeff")
    assert jsonl.exit_code == 2 and "--format csv" in jsonl.stderr


# --- removed contacts, from the command line (point 4)


def test_removed_contacts_are_exported_with_removed_and_brought_back_with_undelete(
    cli, write_csv, db_url
):
    import psycopg

    cli("import", str(write_csv(PEOPLE)))
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("UPDATE contacts SET deleted_at = now() WHERE last_name = 'Hendricks'")
        (gone,) = conn.execute("SELECT id FROM contacts WHERE last_name = 'Hendricks'").fetchone()

    removed = cli("export", "--removed")
    live = cli("export")
    refused = cli("undelete")
    back = cli("undelete", str(gone), "999999")
    after = cli("export")

    assert [json.loads(line)["id"] for line in removed.stdout.splitlines()] == [gone]
    assert [json.loads(line)["last_name"] for line in live.stdout.splitlines()] == ["Brooks"]
    assert refused.exit_code == 2
    assert back.exit_code == 0 and f"brought back 1 contact: {gone}" in back.stdout
    assert "999999" in back.stdout  # named as not a removed contact
    assert [json.loads(line)["last_name"] for line in after.stdout.splitlines()] == [
        "Brooks",
        "Hendricks",
    ]
    assert cli("export", "--removed").stdout == ""
