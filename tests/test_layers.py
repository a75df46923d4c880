"""The layers STYLE.md asks for, checked on the source itself: endpoints hold no SQL and
import no other router, code below the entry points starts no servers, tasks are sent by
name, and each run table's statements live in one module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import contactbook

SRC = Path(contactbook.__file__).parent
API_MODULES = sorted(p.stem for p in (SRC / "api").glob("*.py") if p.stem != "__init__")
ROUTERS = [
    name
    for name in API_MODULES
    if "router = APIRouter(" in (SRC / "api" / f"{name}.py").read_text()
]
#: Modules that start servers; only the entry points (cli.py, the supervisor, the API's
#: factory through its settings) may import them.
SERVERS = ("contactbook.embedded", "contactbook.supervisor")
#: How every statement of ours begins (keywords in capitals, as they are all written).
SQL_STRING = re.compile(r"^\s*(SELECT|INSERT INTO|UPDATE|DELETE FROM|WITH \w+ AS|COPY)\b")


def runtime_imports(path: Path) -> set[str]:
    """The modules `path` imports when it runs (not those under `if TYPE_CHECKING:`);
    `from a import b` counts as both `a` and `a.b`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def nodes(path: Path) -> list[ast.AST]:
    return list(ast.walk(ast.parse(path.read_text(), filename=str(path))))


def sql_strings(path: Path) -> list[str]:
    """The string constants of `path` that are SQL statements."""
    return [
        node.value
        for node in nodes(path)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and SQL_STRING.match(node.value)
    ]


def executes(path: Path) -> list[int]:
    """Lines where `path` runs a statement itself (`….execute(…)`)."""
    return [
        node.lineno
        for node in nodes(path)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("execute", "executemany")
    ]


def test_the_routers_are_found():
    assert {"admin", "health", "v1", "v2"} <= set(ROUTERS)


@pytest.mark.parametrize("router", ROUTERS)
def test_no_router_imports_another_router(router):
    others = {f"contactbook.api.{name}" for name in ROUTERS if name != router}
    assert not runtime_imports(SRC / "api" / f"{router}.py") & others


@pytest.mark.parametrize("module", API_MODULES)
def test_the_api_holds_no_sql(module):
    path = SRC / "api" / f"{module}.py"
    assert not sql_strings(path), f"api/{module}.py writes SQL: move it beside its table"
    assert not executes(path), f"api/{module}.py runs a statement: call a service function"


@pytest.mark.parametrize(
    "path",
    [
        *sorted((SRC / "contacts").glob("*.py")),
        *sorted((SRC / "nimble").glob("*.py")),
        *sorted((SRC / "api").glob("*.py")),
        SRC / "jobs.py",
        SRC / "worker.py",
        SRC / "worker_health.py",
    ],
    ids=lambda path: str(path.relative_to(SRC)),
)
def test_only_the_entry_points_start_servers(path):
    assert not {name for name in runtime_imports(path) if name.startswith(SERVERS)}


def test_jobs_sends_tasks_by_name_without_importing_them():
    """The API queues work through jobs.py; importing it must not load the workers' code."""
    imported = runtime_imports(SRC / "jobs.py")
    task_code = {"contactbook.worker", "contactbook.contacts.tasks", "contactbook.nimble.tasks"}
    assert not imported & task_code


@pytest.mark.parametrize(
    ("table", "owner"),
    [("import_runs", "contacts/runs.py"), ("sync_runs", "contacts/sync_runs.py")],
)
def test_each_run_table_has_one_module_for_its_sql(table, owner):
    statement = re.compile(rf"\b(FROM|INTO|UPDATE|JOIN)\s+{table}\b", re.IGNORECASE)
    writers = {
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if "migrations" not in path.parts
        and any(statement.search(text) for text in sql_strings(path))
    }
    assert writers == {owner}


def test_the_checks_see_what_they_look_for(tmp_path):
    """The scans above find what they forbid (else they could never fail)."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "from contactbook.api import v1\n"
        "if TYPE_CHECKING:\n"
        "    from contactbook import worker\n"
        "def f(conn):\n"
        "    import contactbook.embedded\n"
        "    conn.execute('  SELECT * FROM sync_runs')\n"
    )
    imported = runtime_imports(sample)
    assert {"contactbook.api", "contactbook.api.v1", "contactbook.embedded"} <= imported
    assert "contactbook.worker" not in imported  # only for the type checker
    assert sql_strings(sample) == ["  SELECT * FROM sync_runs"]
    assert executes(sample) == [7]
