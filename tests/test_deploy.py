"""The deployment files say what they mean: no Docker engine runs here, so the compose file,
the collector's configuration and the Dockerfile are read and checked against the code
(the CLI they call, the settings they pass, the files they mount)."""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from prometheus_client.parser import text_string_to_metric_families
from support import free_port
from typer.testing import CliRunner, Result

from contactbook.config import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
VECTOR = ROOT / "deploy" / "vector" / "vector.yaml"
LOKI = ROOT / "deploy" / "loki" / "loki.yaml"
GRAFANA_SOURCES = ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "loki.yaml"
ENTRY_POINT = Path(sys.executable).parent / "contactbook"

APP_SERVICES = ("api", "worker", "beat")


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(COMPOSE)


@pytest.fixture(scope="module")
def services(compose: dict) -> dict:
    return compose["services"]


def contactbook_argv(service: dict) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def cli_help(*words: str) -> Result:
    """`contactbook WORDS… --help`, in this process: what is checked is the CLI's commands
    and options, not its start-up (the compose and serve tests below run the real thing)."""
    from contactbook.cli import app

    return CliRunner().invoke(app, [*words, "--help"], env={"NO_COLOR": "1"})


def subcommand_words(argv: list[str]) -> list[str]:
    """The subcommand: `db upgrade` of `db upgrade --x`, `api` of `api --port 8000`."""
    words = []
    for arg in argv:
        if arg.startswith("-"):
            break
        words.append(arg)
    return words[:2] if words and words[0] == "db" else words[:1]


# --- compose -----------------------------------------------------------------------------------


def test_compose_runs_every_role_and_its_dependencies(services: dict) -> None:
    assert {"api", "worker", "beat", "database", "redis", "loki", "vector"} <= set(services)


def test_app_services_run_the_image_with_a_cli_command(services: dict) -> None:
    for name in APP_SERVICES:
        service = services[name]
        assert service["image"].startswith("contactbook:")
        assert service["build"] == "."
        assert service["init"] is True
        argv = contactbook_argv(service)
        assert argv[0] == name, f"{name} runs `contactbook {argv[0]}`"


def test_api_listens_on_all_interfaces_with_several_workers(services: dict) -> None:
    argv = contactbook_argv(services["api"])
    assert argv[argv.index("--host") + 1] == "0.0.0.0"
    assert argv[argv.index("--port") + 1] == "8000"
    assert int(argv[argv.index("--workers") + 1]) >= 2
    assert any(str(port).endswith(":8000") for port in services["api"]["ports"])


def assert_cli_accepts(argv: list[str]) -> None:
    words = subcommand_words(argv)
    result = cli_help(*words)
    assert result.exit_code == 0, f"contactbook {' '.join(words)} --help: {result.output}"
    for option in (arg for arg in argv if arg.startswith("--")):
        assert option in result.stdout, f"contactbook {' '.join(words)} has no {option}"


def test_every_command_compose_runs_exists_in_the_cli(services: dict) -> None:
    for name in APP_SERVICES:
        assert_cli_accepts(contactbook_argv(services[name]))


def test_every_healthcheck_compose_runs_exists_in_the_cli(services: dict) -> None:
    for name in APP_SERVICES:
        test = services[name]["healthcheck"]["test"]
        assert test[:2] == ["CMD", "contactbook"]
        assert_cli_accepts(test[2:])
    dockerfile = DOCKERFILE.read_text()
    assert 'CMD ["contactbook", "healthcheck"]' in dockerfile


def test_every_service_has_a_real_healthcheck(services: dict) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test, f"{name} has no healthcheck"
        assert test[0] in ("CMD", "CMD-SHELL"), name
        text = " ".join(test[1:])
        assert "sleep" not in text, f"{name}'s healthcheck waits instead of checking"
    assert "/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert "pg_isready" in " ".join(services["database"]["healthcheck"]["test"])
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert services["worker"]["healthcheck"]["test"][-1] == "worker"
    assert services["beat"]["healthcheck"]["test"][-1] == "beat"


def test_start_order_waits_for_healthy_dependencies(services: dict) -> None:
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        assert isinstance(depends_on, dict), f"{name}: depends_on without conditions"
        for dependency, rule in depends_on.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert rule == {"condition": "service_healthy"}, f"{name} → {dependency}: {rule}"
    assert {"database", "redis"} <= set(services["api"]["depends_on"])
    # The api applies migrations before it turns healthy; the others need the schema.
    assert "api" in services["worker"]["depends_on"]
    assert "api" in services["beat"]["depends_on"]


def test_nothing_waits_by_sleeping(services: dict) -> None:
    for name, service in services.items():
        for key in ("command", "entrypoint"):
            value = service.get(key)
            text = value if isinstance(value, str) else " ".join(value or [])
            assert not re.search(r"\b(sleep|wait-for|wait-for-it|dockerize)\b", text), name


def test_volumes_are_named_or_the_documented_bind_mounts(compose: dict, services: dict) -> None:
    declared = set(compose.get("volumes", {}))
    used: set[str] = set()
    binds: dict[str, set[str]] = {}
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith(("./", "/")):
                binds.setdefault(source, set()).add(f"{name}:{target}")
            else:
                used.add(source)
    assert used <= declared, f"undeclared volumes: {used - declared}"
    assert declared <= used, f"declared but unused volumes: {declared - used}"
    assert "database:/var/lib/postgresql" in binds["./pg_data"]
    assert "database:/backups" in binds["./pg_backups"]
    assert "api:/var/lib/contactbook/backups" in binds["./pg_backups"]
    assert "loki_data" in used
    for source in binds:
        if source.startswith("./deploy/"):
            assert (ROOT / source).exists(), f"{source} is mounted but missing"


def test_uploads_are_shared_by_the_api_and_the_worker(services: dict) -> None:
    for name in ("api", "worker"):
        assert "uploads:/var/lib/contactbook/uploads" in services[name]["volumes"], name


def test_metrics_directory_is_shared_by_api_worker_and_beat(services: dict) -> None:
    for name in APP_SERVICES:
        assert "metrics:/var/lib/contactbook/metrics" in services[name]["volumes"], name
        assert services[name]["environment"]["CONTACTBOOK_HOME"] == "/var/lib/contactbook"


def test_app_services_reach_database_and_redis_by_service_name(services: dict) -> None:
    environment = services["api"]["environment"]
    assert "@database:5432/contactbook" in environment["DATABASE_URL"]
    assert "redis://redis:6379" in environment["REDIS_URL"]
    assert "${POSTGRES_PASSWORD" in services["database"]["environment"]["POSTGRES_PASSWORD"]


def test_official_images_are_pinned(services: dict) -> None:
    assert re.fullmatch(r"postgres:(1[6-9]|[2-9]\d)(\.\d+)?", services["database"]["image"])
    assert re.fullmatch(r"redis:7(\.\d+)*", services["redis"]["image"])
    for name, service in services.items():
        if name not in APP_SERVICES:
            assert not service["image"].endswith(":latest"), name


# --- log collection ----------------------------------------------------------------------------


def test_vector_collects_every_labelled_container_into_loki(services: dict) -> None:
    config = load_yaml(VECTOR)
    source_ids = set(config["sources"])
    transform_ids = set(config.get("transforms", {}))
    for component in [*config.get("transforms", {}).values(), *config["sinks"].values()]:
        for upstream in component["inputs"]:
            assert upstream in source_ids | transform_ids, f"unknown input {upstream}"
    (source,) = config["sources"].values()
    assert source["type"] == "docker_logs"
    (label,) = source["include_labels"]
    key, _, value = label.partition("=")
    for name in (*APP_SERVICES, "database", "redis"):
        assert services[name]["labels"][key] == value, f"{name}'s logs are not collected"
    loki_sinks = [sink for sink in config["sinks"].values() if sink["type"] == "loki"]
    assert loki_sinks and loki_sinks[0]["endpoint"] == "http://loki:3100"
    assert set(loki_sinks[0]["labels"]) == {"service", "level", "stream"}  # bounded labels
    assert "/var/run/docker.sock:/var/run/docker.sock:ro" in services["vector"]["volumes"]
    assert config["api"]["enabled"] is True
    assert "8686/health" in " ".join(services["vector"]["healthcheck"]["test"])


def test_loki_stores_logs_in_its_volume_and_keeps_them_bounded(services: dict) -> None:
    config = load_yaml(LOKI)
    assert config["auth_enabled"] is False
    assert config["common"]["path_prefix"] == "/loki"
    assert "loki_data:/loki" in services["loki"]["volumes"]
    schema = config["schema_config"]["configs"][-1]
    assert (schema["store"], schema["schema"], schema["object_store"]) == (
        "tsdb",
        "v13",
        "filesystem",
    )
    assert config["compactor"]["retention_enabled"] is True
    assert config["limits_config"]["retention_period"]
    mounted = {v.split(":")[1] for v in services["loki"]["volumes"]}
    assert services["loki"]["command"][0].removeprefix("-config.file=") in mounted


def test_grafana_is_optional_and_reads_loki() -> None:
    compose = load_yaml(COMPOSE)
    assert compose["services"]["grafana"]["profiles"] == ["grafana"]
    sources = load_yaml(GRAFANA_SOURCES)["datasources"]
    assert sources[0]["type"] == "loki" and sources[0]["url"] == "http://loki:3100"


# --- the read replica ---------------------------------------------------------------------------


def mounted_file(service: dict, target: str) -> Path:
    """The file of the repository a service mounts at `target`."""
    for volume in service.get("volumes", []):
        source, mount = volume.split(":")[:2]
        if mount == target:
            return ROOT / source
    raise AssertionError(f"nothing is mounted at {target}")


def test_replica_is_an_optional_streaming_standby_of_the_database(services: dict) -> None:
    replica = services["replica"]
    assert replica["profiles"] == ["replica"]
    # A physical copy: the same PostgreSQL major version as the primary.
    assert replica["image"] == services["database"]["image"]
    assert replica["depends_on"] == {"database": {"condition": "service_healthy"}}
    assert replica["environment"]["PRIMARY_HOST"] == "database"
    assert replica["environment"]["POSTGRES_USER"] == "contactbook"
    assert "${POSTGRES_PASSWORD" in replica["environment"]["PGPASSWORD"]
    assert "replica_data:/var/lib/postgresql" in replica["volumes"]
    assert "pg_is_in_recovery()" in " ".join(replica["healthcheck"]["test"])
    script = mounted_file(replica, replica["entrypoint"][-1])
    text = script.read_text(encoding="utf-8")
    command = re.search(r"^\s*pg_basebackup .*$", text.replace("\\\n", " "), re.MULTILINE)
    assert command, f"{script.name} runs no pg_basebackup"
    for option in ('--host="$PRIMARY_HOST"', "--write-recovery-conf", "--wal-method=stream"):
        assert option in command.group(), option
    assert 'if [ ! -s "$PGDATA/PG_VERSION" ]' in text  # copies once, then resumes
    assert text.rstrip().endswith('exec postgres -D "$PGDATA"')
    assert subprocess.run(["sh", "-n", str(script)], check=False).returncode == 0
    # Nothing waits for it: reads use the primary until it answers.
    for name in APP_SERVICES:
        assert "replica" not in services[name].get("depends_on", {}), name


def test_the_database_accepts_replication_from_other_containers_with_a_password(
    services: dict,
) -> None:
    command = services["database"]["command"]
    assert command[0] == "postgres"
    hba_file = next(arg for arg in command if arg.startswith("hba_file=")).split("=", 1)[1]
    rules = [
        line.split()
        for line in mounted_file(services["database"], hba_file).read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ["host", "replication", "all", "all", "scram-sha-256"] in rules
    assert ["host", "all", "all", "all", "scram-sha-256"] in rules
    for rule in rules:  # trust only over the container's own socket and loopback
        if rule[-1] == "trust":
            assert rule[0] == "local" or rule[3] in ("127.0.0.1/32", "::1/128"), rule
    assert any(arg.startswith("wal_keep_size=") for arg in command)


def test_api_and_worker_read_from_the_replica_when_database_read_url_is_set(
    services: dict,
) -> None:
    for name in ("api", "worker"):
        assert services[name]["environment"]["DATABASE_READ_URL"] == "${DATABASE_READ_URL:-}"
    # Blank (the default above) means unset: reads use DATABASE_URL.
    assert Settings(_env_file=None, database_read_url="").database_read_url is None
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert "@replica:5432/contactbook" in example and "--profile replica" in example


# --- Dockerfile and the lock ------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    instructions = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            instructions.append((keyword.upper(), rest.strip()))
    return instructions


def test_dockerfile_is_multi_stage_on_slim_python() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert len(stages) >= 2
    base = next(rest for keyword, rest in instructions if keyword == "ARG" and "PYTHON" in rest)
    assert re.search(r"python:3\.12-slim", base)
    assert any("COPY --from=builder /opt/venv" in f"COPY {rest}" for k, rest in instructions)
    assert any("requirements.lock" in rest for keyword, rest in instructions if keyword == "RUN")


def test_runtime_stage_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    runtime = instructions[last_from:]
    users = [rest for keyword, rest in runtime if keyword == "USER"]
    assert users, "the runtime stage runs as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")
    healthcheck = next(rest for keyword, rest in runtime if keyword == "HEALTHCHECK")
    assert '["contactbook", "healthcheck"]' in healthcheck
    assert ("ENTRYPOINT", '["contactbook"]') in runtime
    cmd = next(rest for keyword, rest in runtime if keyword == "CMD")
    assert cmd.startswith('["api"')


def test_dockerignore_keeps_the_build_context_small() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the image needs back in
    assert {"!pyproject.toml", "!requirements.lock", "!src/", "!README.md"} <= set(lines)


def test_requirements_lock_pins_every_runtime_dependency_as_installed() -> None:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"not pinned: {line}"
            pins[canonicalize_name(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        assert canonicalize_name(Requirement(dependency).name) in pins, dependency
    for dev_tool in ("pytest", "ruff", "playwright", "hypothesis"):
        assert dev_tool not in pins
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version, f"{name} in the venv differs"


def test_env_example_lists_every_setting() -> None:
    text = (ROOT / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))
    missing = {name.upper() for name in Settings.model_fields} - listed
    assert not missing, f".env.example lacks {sorted(missing)}"
    compose_variables = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", COMPOSE.read_text()))
    assert compose_variables <= listed | {"DATABASE_URL", "REDIS_URL"}


# --- the roles, started as compose starts them -------------------------------------------------

LOG_FIELDS = {"time", "level", "logger", "message", "process", "pid", "request_id", "task_id"}
ADMIN_TOKEN = "e2e-admin-token-7c1d"
UPLOAD = "first name,last name,email\nAda,Lovelace,ada@example.com\nAlan,Turing,alan@example.com\n"


def wait_until(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        outcome = check()
        if outcome:
            return outcome
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def private_redis_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of this test's own: a worker started by another test (in this process, on
    the session's Redis) must not take our tasks."""
    from contactbook.embedded import EmbeddedRedis

    server = EmbeddedRedis(tmp_path / "redis")
    try:
        yield server.start()
    finally:
        server.stop()


def metric_samples(text: str) -> dict[tuple[str, frozenset], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


@pytest.mark.slow
def test_the_roles_compose_runs_are_healthy_log_json_and_expose_metrics(
    services: dict, cli_env: dict, private_redis_url: str, tmp_path: Path
) -> None:
    """api (two uvicorn workers), worker and beat through the real entry point, with the
    environment compose gives them; then a search, an upload import and a sync."""
    from nimble_fixtures import API_KEY, people, simulator_server

    port = free_port()
    env = {
        **cli_env,
        "REDIS_URL": private_redis_url,
        "LOG_LEVEL": "INFO",
        "CONTACTBOOK_ADMIN_TOKEN": ADMIN_TOKEN,
        "CONTACTBOOK_CSV": str(ROOT / "tests" / "data" / "empty.csv"),
        "NIMBLE_API_KEY": API_KEY,
        "MAX_HEADER_BYTES": "4096",
    }
    api_argv = contactbook_argv(services["api"])
    api_argv[api_argv.index("--host") + 1] = "127.0.0.1"
    api_argv[api_argv.index("--port") + 1] = str(port)
    commands = {
        "api": api_argv,
        "worker": contactbook_argv(services["worker"]),
        "beat": contactbook_argv(services["beat"]),
    }
    base = f"http://127.0.0.1:{port}"
    healthchecks = {
        "api": ["healthcheck", "api", "--url", f"{base}/readyz"],
        "worker": ["healthcheck", "worker"],
        "beat": ["healthcheck", "beat"],
    }
    logs = {role: tmp_path / f"{role}.log" for role in commands}
    processes: dict[str, subprocess.Popen] = {}
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with simulator_server() as simulator:
        simulator.reset(people(30))
        env["NIMBLE_API_URL"] = simulator.url
        try:
            for role, argv in commands.items():
                with logs[role].open("wb") as log_file:
                    processes[role] = subprocess.Popen(
                        [str(ENTRY_POINT), *argv], env=env, cwd=tmp_path,
                        stdout=log_file, stderr=subprocess.STDOUT,
                    )  # fmt: skip

            def healthy(role: str) -> bool:
                assert processes[role].poll() is None, f"{role} exited: {logs[role].read_text()}"
                result = subprocess.run(
                    [str(ENTRY_POINT), *healthchecks[role]],
                    env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                assert result.stdout.startswith(("healthy: ", "unhealthy: ")), result.stderr
                return result.returncode == 0

            for role in commands:
                wait_until(lambda role=role: healthy(role), timeout=120, what=f"{role} healthy")

            with httpx.Client(base_url=base, timeout=30) as http:
                found = http.get(
                    "/api/v1/search", params={"text": "anything"}, headers={"X-Request-ID": "e2e-1"}
                )
                assert found.status_code == 200 and found.headers["X-Request-ID"] == "e2e-1"
                for cookie, status in (("c" * 2_000, 200), ("c" * 6_000, 431)):
                    answer = httpx.get(f"{base}/healthz", headers={"Cookie": cookie})
                    assert answer.status_code == status  # MAX_HEADER_BYTES, in every worker
                upload = http.post(
                    "/api/v1/imports",
                    content=UPLOAD.encode(),
                    headers={**admin, "Content-Type": "text/csv"},
                )
                sync = http.post("/api/v1/sync", params={"full": "true"}, headers=admin)
                assert upload.status_code == sync.status_code == 202, (upload.text, sync.text)
                task_ids = {"import": upload.json()["task_id"], "sync": sync.json()["task_id"]}
                for kind, task_id in task_ids.items():
                    wait_until(
                        lambda task_id=task_id: (
                            http.get(f"/api/v1/tasks/{task_id}", headers=admin).json()["status"]
                            in ("SUCCESS", "FAILURE")
                        ),
                        timeout=60,
                        what=f"the {kind} task",
                    )
                    status = http.get(f"/api/v1/tasks/{task_id}", headers=admin).json()
                    assert status["status"] == "SUCCESS", status
                exposition = http.get("/metrics")
            assert exposition.status_code == 200
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.terminate()
            for role, process in processes.items():
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
                    pytest.fail(f"{role} did not stop on SIGTERM")

    # /metrics of the API shows the worker's tasks too (the shared multiprocess directory).
    samples = metric_samples(exposition.text)
    names = {name for name, _ in samples}
    for family in (
        "contactbook_http_requests_total",
        "contactbook_http_request_duration_seconds_bucket",
        "contactbook_search_results_count",
        "contactbook_sync_runs_total",
        "contactbook_sync_last_success_timestamp_seconds",
        "contactbook_sync_last_run_contacts",
        "contactbook_import_rows_total",
        "contactbook_celery_tasks_total",
        "contactbook_celery_task_duration_seconds_count",
    ):
        assert family in names, f"/metrics lacks {family}"
    route = frozenset({("method", "GET"), ("route", "/api/v1/search"), ("status", "200")})
    assert samples[("contactbook_http_requests_total", route)] >= 1
    assert samples[("contactbook_sync_runs_total", frozenset({("status", "success")}))] >= 1
    fetched = ("contactbook_sync_last_run_contacts", frozenset({("figure", "fetched")}))
    assert samples[fetched] == 30
    assert samples[("contactbook_import_rows_total", frozenset({("outcome", "read")}))] >= 2
    succeeded_tasks = {
        dict(labels)["task"]
        for (name, labels), count in samples.items()
        if name == "contactbook_celery_tasks_total" and dict(labels)["state"] == "SUCCESS"
    }
    assert {"contactbook.import_csv_file", "contactbook.sync_contacts"} <= succeeded_tasks

    # Every line each process wrote is one JSON object with the fields, and no secret.
    for role, path in logs.items():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, f"{role} wrote nothing"
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{role} wrote a line that is not JSON: {line!r}")
            assert set(record) >= LOG_FIELDS, f"{role}: {line}"
            assert record["process"] == role, line
        text = path.read_text()
        assert ADMIN_TOKEN not in text and API_KEY not in text, f"{role} logged a secret"
    api_lines = [json.loads(line) for line in logs["api"].read_text().splitlines()]
    access = [r for r in api_lines if r["logger"] == "contactbook.access"]
    assert any(r["request_id"] == "e2e-1" and r["path"] == "/api/v1/search" for r in access)
    worker_lines = [json.loads(line) for line in logs["worker"].read_text().splitlines()]
    assert any(r["task_id"] == task_ids["sync"] for r in worker_lines)


# --- the healthcheck command ------------------------------------------------------------------


@pytest.fixture
def probe_target() -> Iterator[str]:
    """A tiny HTTP server: /healthz answers 200, /readyz 503."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from support import start_server

    app = FastAPI()

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        return JSONResponse({"status": "not ready"}, status_code=503)

    server = start_server(app)
    try:
        yield server.url
    finally:
        server.stop()


def test_api_healthcheck_follows_the_http_answer(probe_target: str, capsys) -> None:
    from contactbook.healthcheck import check, healthcheck

    assert check("api", url=f"{probe_target}/healthz").healthy
    not_ready = check("api", url=f"{probe_target}/readyz")
    assert not not_ready.healthy and "503" in not_ready.detail
    refused = check("api", url=f"http://127.0.0.1:{free_port()}/healthz", timeout=2)
    assert not refused.healthy and "ConnectError" in refused.detail
    assert healthcheck("api", url=f"{probe_target}/readyz") == 1
    assert capsys.readouterr().out.startswith("unhealthy: GET ")


def test_healthcheck_reads_the_role_and_port_from_the_running_command() -> None:
    from contactbook.healthcheck import _local_url, _RoleProcess, role_from_argv

    venv = "/opt/venv/bin"
    argv = (f"{venv}/python", f"{venv}/contactbook", "api", "--host", "0.0.0.0", "--port", "9000")
    assert role_from_argv(argv) == "api"
    assert role_from_argv((f"{venv}/contactbook", "worker")) == "worker"
    assert role_from_argv(("python", "-m", "contactbook.cli", "beat")) == "beat"
    assert role_from_argv((f"{venv}/contactbook", "healthcheck")) is None
    assert role_from_argv(("/usr/bin/postgres", "-D", "/data")) is None
    assert _local_url(_RoleProcess(1, "api", argv)) == "http://127.0.0.1:9000/healthz"
    assert _local_url(None) == "http://127.0.0.1:8000/healthz"
    with_equals = (f"{venv}/contactbook", "serve", "--host=127.0.0.2", "--port=8080")
    assert _local_url(_RoleProcess(1, "serve", with_equals)) == "http://127.0.0.2:8080/healthz"


def test_healthcheck_refuses_an_unknown_role() -> None:
    from contactbook.healthcheck import check

    result = check("scheduler")
    assert not result.healthy and "api, worker, beat, serve" in result.detail


@pytest.mark.slow
def test_serve_and_every_child_log_json_lines(
    cli_env: dict, private_redis_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **cli_env,
        "REDIS_URL": private_redis_url,
        "CONTACTBOOK_CSV": str(ROOT / "tests" / "data" / "empty.csv"),
    }
    home = Path(env["CONTACTBOOK_HOME"])
    output = tmp_path / "serve.log"
    base = f"http://127.0.0.1:{port}"
    with output.open("wb") as log_file:
        serve = subprocess.Popen(
            [str(ENTRY_POINT), "serve", "--port", str(port)],
            env=env, cwd=tmp_path, stdout=log_file, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:

        def healthy(*words: str) -> bool:
            assert serve.poll() is None, output.read_text()
            result = subprocess.run(
                [str(ENTRY_POINT), "healthcheck", *words],
                env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            return result.returncode == 0

        wait_until(lambda: healthy("serve", "--url", f"{base}/readyz"), timeout=120, what="api")
        wait_until(lambda: healthy("worker"), timeout=60, what="the worker")
        answer = httpx.get(f"{base}/api/v1/search", params={"text": "x"}, timeout=30)
        assert answer.status_code == 200
    finally:
        serve.terminate()
        serve.wait(timeout=60)
    assert serve.returncode == 0, output.read_text()
    expected = {output: "serve", **{home / "logs" / f"{r}.log": r for r in APP_SERVICES}}
    for path, role in expected.items():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        assert lines, f"{path.name} is empty"
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pytest.fail(f"{path.name}: not JSON: {line!r}")
            assert set(record) >= LOG_FIELDS and record["process"] == role, line


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    allowed = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for keyword, rest in dockerfile_instructions():
        if keyword != "COPY" or rest.startswith("--from="):
            continue
        *sources, _destination = rest.split()
        for source in sources:
            assert (ROOT / source).exists(), f"COPY {source}: missing"
            assert source.rstrip("/") in allowed, f"COPY {source}: excluded by .dockerignore"


# --- the documentation matches the code (issue 16, point 12; issue 15, point 6) ---------------

README = ROOT / "README.md"


def test_compose_logs_json_even_when_a_container_gets_a_terminal(services: dict) -> None:
    for name in APP_SERVICES:
        assert services[name]["environment"]["LOG_FORMAT"] == "json", name


def test_nimble_api_url_defaults_to_the_documented_api_key_host() -> None:
    assert Settings(_env_file=None).nimble_api_url == "https://app.nimble.com"
    assert "# NIMBLE_API_URL=https://app.nimble.com" in (ROOT / ".env.example").read_text()
    assert "| `NIMBLE_API_URL` |" in README.read_text()
    readme_row = next(
        line for line in README.read_text().splitlines() if line.startswith("| `NIMBLE_API_URL`")
    )
    assert "`https://app.nimble.com`" in readme_row and "api.nimble.com" not in readme_row


def test_readme_lists_every_setting() -> None:
    text = README.read_text(encoding="utf-8")
    missing = {name.upper() for name in Settings.model_fields if f"`{name.upper()}`" not in text}
    assert not missing, f"README lacks {sorted(missing)}"


def test_readme_names_every_command_and_endpoint() -> None:
    from contactbook.api.app import create_app
    from contactbook.cli import app as cli_app

    text = README.read_text(encoding="utf-8")
    for command in cli_app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"`contactbook {name}" in text, name
    api = create_app(Settings(_env_file=None, database_url="postgresql://unused/x"))
    documented = re.sub(r"\{[^}]+\}", "{}", text)  # /contacts/{id} documents {contact_id}
    for route in api.routes:
        if getattr(route, "include_in_schema", False):
            assert re.sub(r"\{[^}]+\}", "{}", route.path) in documented, route.path


def test_readme_describes_healthcheck_roles_highlight_and_restore_as_the_code_does() -> None:
    from contactbook.contacts.schemas import Highlight
    from contactbook.healthcheck import ROLES

    text = README.read_text(encoding="utf-8")
    escaped = "\\|".join(ROLES)  # a | inside a Markdown table cell
    assert f"`contactbook healthcheck [{'|'.join(ROLES)}]`" in text
    assert f"`contactbook healthcheck [{escaped}]`" in text
    keys = ", ".join(f'"{field}"' for field in Highlight.model_fields)
    assert f"`highlight`, an object `{{{keys}}}`" in text
    assert "`contactbook restore FILE [--yes]`" in text
    assert "./.contactbook" not in text


def test_compose_redis_has_bounded_memory_that_evicts_only_expiring_keys(services: dict) -> None:
    # Results and issued ids all expire; the queues never do, so they are never evicted.
    command = contactbook_argv(services["redis"])

    assert command[command.index("--maxmemory") + 1] == "${REDIS_MAXMEMORY:-256mb}"
    assert command[command.index("--maxmemory-policy") + 1] == "volatile-ttl"
