"""The `contactbook` command through its installed entry point."""

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


def test_every_command_has_help_with_an_example(run_cli):
    for command in (["serve"], ["api"], ["import"], ["search"], ["export"], ["db", "upgrade"]):
        result = run_cli(*command, "--help")
        assert result.returncode == 0, result.stderr
        assert "Example" in result.stdout, command


def test_import_prints_a_summary_with_skipped_lines(run_cli, write_csv):
    result = run_cli("import", str(write_csv(PEOPLE)))

    assert result.returncode == 0, result.stderr
    assert "rows read" in result.stdout and "inserted" in result.stdout
    assert "skipped line 4: no first name, last name, email, description, phone" in result.stdout


def test_import_prints_the_problems_with_their_lines(run_cli, write_csv):
    content = HEADER + "Bob,Stone,EMEA,Sales\nCy,Lovelace, Ada,cy@example.org,Shifted\n"
    result = run_cli("import", str(write_csv(content)))

    assert result.returncode == 0, result.stderr
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
def test_an_unusable_file_exits_2_and_writes_nothing(run_cli, write_csv, conn, content, fragment):
    result = run_cli("import", str(write_csv(content)))

    assert result.returncode == 2
    assert fragment in result.stderr
    assert "Nothing was imported" in result.stderr
    assert conn.execute("SELECT count(*) AS n FROM contacts").fetchone()["n"] == 0


def test_a_missing_path_exits_2(run_cli, tmp_path):
    result = run_cli("import", str(tmp_path / "missing.csv"))

    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_search_json_is_the_api_answer(run_cli, write_csv, live_api):
    import httpx

    run_cli("import", str(write_csv(PEOPLE)))
    result = run_cli("search", "tom brooks", "--json")
    api_answer = httpx.get(f"{live_api()}/api/v1/search", params={"text": "tom brooks"}).json()

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == api_answer
    assert api_answer[0]["email"] == "tbrooks@northwind.io"


def test_search_prints_a_table_or_a_hint(run_cli, write_csv):
    run_cli("import", str(write_csv(PEOPLE)))

    found = run_cli("search", "hendricks")
    missing = run_cli("search", "nobody-like-this")
    blank = run_cli("search", " ")

    assert "Hendricks" in found.stdout
    assert "no contact matches" in missing.stdout
    assert blank.returncode == 2 and "blank" in blank.stderr


def test_export_jsonl_has_the_api_fields(run_cli, write_csv):
    run_cli("import", str(write_csv(PEOPLE)))

    result = run_cli("export")

    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["last_name"] for r in rows] == ["Brooks", "Hendricks"]
    assert set(rows[0]) == set(Contact.model_fields)  # the API's contact, key for key
    assert rows[0]["phones"] == [] and rows[0]["tags"] == [] and rows[0]["phone"] is None


def test_export_csv_neutralises_formulas(run_cli, write_csv):
    run_cli("import", str(write_csv(PEOPLE)))

    result = run_cli("export", "--format", "csv")

    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert rows[1]["description"] == '\'=HYPERLINK("http://evil")'


def test_db_upgrade_is_idempotent(run_cli):
    assert run_cli("db", "upgrade").returncode == 0
    assert run_cli("db", "upgrade").returncode == 0


def test_sync_prints_its_figures_and_fails_without_changing_data(run_cli, write_csv, db_url):
    from nimble_fixtures import API_KEY, people, simulator_server
    from support import dump_contacts

    with simulator_server() as simulator:
        simulator.reset(people(3))
        env = {"NIMBLE_API_URL": simulator.url, "NIMBLE_API_KEY": API_KEY}

        first = run_cli("sync", "--full", env=env)
        before = dump_contacts(db_url)
        wrong_key = run_cli("sync", env={**env, "NIMBLE_API_KEY": "not-the-key-123"})

    assert first.returncode == 0, first.stderr
    assert "inserted" in first.stdout and "3" in first.stdout
    assert wrong_key.returncode == 1
    assert "NIMBLE_API_KEY" in wrong_key.stderr
    assert "not-the-key-123" not in wrong_key.stdout + wrong_key.stderr
    assert "were not changed" in wrong_key.stderr
    assert dump_contacts(db_url) == before


def test_sync_without_a_key_says_so(run_cli):
    result = run_cli("sync")

    assert result.returncode == 1
    assert "NIMBLE_API_KEY is not set" in result.stderr


def test_fake_nimble_refuses_both_sources(run_cli, tmp_path):
    data = tmp_path / "people.json"
    data.write_text("[]")

    result = run_cli("fake-nimble", "--contacts", "3", "--data", str(data))

    assert result.returncode == 2
    assert "not both" in result.stderr


def test_import_names_at_most_ten_ignored_columns(run_cli, write_csv):
    extra = ",".join(f"Extra {i}" for i in range(30))
    path = write_csv(f"Email,{extra}\nann@example.org{',' * 30}\n")

    result = run_cli("import", str(path))

    assert result.returncode == 0, result.stderr
    assert "Extra 9 … and 20 more" in result.stdout
    assert "Extra 10," not in result.stdout
