"""What can be checked of docker/compose.yaml and docker/Dockerfile without a Docker engine.

The compose file must parse as YAML, hold the services of a small cluster, build every sweeper
service from docker/Dockerfile, and wire them together (the runner's scheduler and database are
services of the file). Every command line is parsed by the real parser of the program that will
receive it: sweeper's own (Typer/click) for services that keep the image's `sweeper` entrypoint,
distributed's `dask scheduler` / `dask worker` for the others. The PostgreSQL password comes
from a secret file only (never a command line, which `ps` shows, nor an environment variable),
and the Dask scheduler listens on the internal compose network only. `problems` gathers every
finding; the tests below also feed it broken variants, to prove each check can fail.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import click
import pytest
import typer
import yaml
from sqlalchemy.engine import make_url

from sweeper.cli import app

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "compose.yaml"
DOCKERFILE = REPO / "docker" / "Dockerfile"
SERVICES = {"postgres", "scheduler", "dask-worker", "sweeper-worker", "runner"}
#: the services that open the database (with the password from the secret file).
DB_USERS = ("dask-worker", "sweeper-worker", "runner")
_VAR = re.compile(r"\$\{(\w+)(?:(:?-)([^}]*))?\}")


def interpolate(text: str) -> str:
    """Compose's variable substitution with every variable unset: the defaults."""
    return _VAR.sub(lambda m: m.group(3) or "", text)


def resolved(value: Any) -> Any:
    """`value` with `${VAR:-default}` replaced throughout, as `docker compose config` would."""
    if isinstance(value, str):
        return interpolate(value)
    if isinstance(value, list):
        return [resolved(v) for v in value]
    if isinstance(value, dict):
        return {k: resolved(v) for k, v in value.items()}
    return value


class CommandLineError(Exception):
    """A command line its program would reject."""


def sweeper_parse(args: list[str]) -> dict[str, Any]:
    """Parse a sweeper command line as the installed CLI does, without running it.

    Returns:
        The sub-command's parameters, converted to their types.

    Raises:
        CommandLineError: an unknown sub-command or option, a missing argument, a bad value.
    """
    group = typer.main.get_command(app)  # Typer's own click: its errors are TyperExceptions
    try:
        ctx = group.make_context("sweeper", list(args))
        name, command, rest = group.resolve_command(ctx, list(args))
        if command is None:
            raise CommandLineError(f"no sweeper sub-command {name!r}")
        return dict(command.make_context(str(name), rest, parent=ctx).params)
    except typer.exceptions.TyperException as exc:
        raise CommandLineError(getattr(exc, "format_message", exc.__str__)()) from None


def dask_parse(entrypoint: list[str], args: list[str]) -> dict[str, Any]:
    """Parse a `dask scheduler` / `dask worker` command line with distributed's own parser."""
    pytest.importorskip("distributed")
    if entrypoint[:2] == ["dask", "scheduler"]:
        from distributed.cli.dask_scheduler import main
    elif entrypoint[:2] == ["dask", "worker"]:
        from distributed.cli.dask_worker import main
    else:
        raise CommandLineError(f"unknown entrypoint {entrypoint}")
    try:
        return dict(main.make_context(" ".join(entrypoint), list(args)).params)
    except click.ClickException as exc:
        raise CommandLineError(exc.format_message()) from None


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args[:-1] else None


def dockerfile_problems(text: str) -> list[str]:
    out = []
    entry = re.search(r"^ENTRYPOINT (.+)$", text, re.M)
    if entry is None or json.loads(entry.group(1)) != ["sweeper"]:
        out.append('Dockerfile: ENTRYPOINT is not ["sweeper"]')
    if not re.search(r"^ARG TORCH_INDEX=\S+", text, re.M):
        out.append("Dockerfile: no build argument TORCH_INDEX (CPU wheels by default)")
    elif '--index-url "${TORCH_INDEX}"' not in text:
        out.append("Dockerfile: TORCH_INDEX does not choose torch's wheel index")
    extras = re.search(r'pip install "\.\[([^\]]*)\]"', text)
    found = set(extras.group(1).split(",")) if extras else set()
    for extra in ("postgres", "dask"):
        if extra not in found:
            out.append(f"Dockerfile: the project is installed without the {extra} extra")
    return out


def url_with_password(text: str) -> str | None:
    """`text` with its password masked when it is a URL that carries one, else None."""
    if "://" not in text:
        return None
    try:
        parsed = make_url(text)
    except Exception:  # noqa: BLE001 - not a database URL at all
        return None
    return parsed.render_as_string(hide_password=True) if parsed.password else None


def secret_problems(doc: Any, services: dict[str, Any]) -> list[str]:
    """The password: in a secret file, read by PostgreSQL and by every sweeper service that
    opens the database; in no command line, environment value or URL."""
    out = []
    for name, svc in services.items():
        for arg in [*(svc.get("entrypoint") or []), *(svc.get("command") or [])]:
            if url_with_password(str(arg)):
                out.append(f"{name}: a password on the command line ({url_with_password(arg)})")
        env = svc.get("environment") or {}
        for key, value in env.items():
            if key.endswith("PASSWORD"):
                out.append(f"{name}: {key} in the environment; use a secret file")
            elif url_with_password(str(value)):
                out.append(f"{name}: a password in ${key} ({url_with_password(str(value))})")
    declared = resolved(doc.get("secrets") or {})
    pg = services.get("postgres", {})
    path = (pg.get("environment") or {}).get("POSTGRES_PASSWORD_FILE", "")
    secret = path.removeprefix("/run/secrets/")
    if not path.startswith("/run/secrets/") or secret not in declared:
        out.append(f"postgres: POSTGRES_PASSWORD_FILE {path!r} is not a declared secret")
        return out
    source = declared[secret].get("file") if isinstance(declared[secret], dict) else None
    if not source or not (COMPOSE.parent / source).is_file():
        out.append(f"secret {secret}: no file {source!r} beside the compose file")
    for name in ("postgres", *DB_USERS):
        svc = services.get(name, {})
        if secret not in (svc.get("secrets") or []):
            out.append(f"{name}: does not mount the secret {secret}")
        if name != "postgres":
            got = (svc.get("environment") or {}).get("SWEEPER_DB_PASSWORD_FILE")
            if got != path:
                out.append(f"{name}: SWEEPER_DB_PASSWORD_FILE is {got!r}, not {path}")
    return out


def scheduler_problems(doc: Any, services: dict[str, Any]) -> list[str]:
    """The scheduler (plain TCP, no TLS) listens on the internal compose network only."""
    out = []
    svc = services.get("scheduler", {})
    host = option([str(a) for a in svc.get("command") or []], "--host")
    if host in (None, "", "0.0.0.0", "::", "[::]"):
        out.append(f"scheduler: listens on all interfaces (--host {host})")
    elif host != "scheduler":
        out.append(f"scheduler: --host {host} is not its name on the compose network")
    if svc.get("ports"):
        out.append(f"scheduler: publishes ports {svc['ports']} on the Docker host")
    networks = doc.get("networks") or {}
    joined = svc.get("networks") or ["default"]
    for net in joined:
        if not (networks.get(net) or {}).get("internal"):
            out.append(f"scheduler: on network {net}, which is not internal")
    health = " ".join(str(a) for a in (svc.get("healthcheck") or {}).get("test", []))
    if host and host not in health:
        out.append(f"scheduler: the healthcheck does not connect to {host}, where it listens")
    return out


def problems(doc: Any, dockerfile: str) -> list[str]:
    """Everything wrong with a compose document (and the Dockerfile its services build)."""
    out = dockerfile_problems(dockerfile)
    services = resolved(doc.get("services") or {}) if isinstance(doc, dict) else {}
    missing = SERVICES - set(services)
    if missing:
        out.append(f"missing services: {', '.join(sorted(missing))}")
    args_declared = set(re.findall(r"^ARG (\w+)", dockerfile, re.M))
    pg = services.get("postgres", {})
    if not str(pg.get("image", "")).startswith("postgres:"):
        out.append("postgres: not a postgres image")
    pg_env = pg.get("environment", {})
    commands: dict[str, list[str]] = {}
    for name, svc in services.items():
        if name == "postgres":
            continue
        build = svc.get("build")
        if not isinstance(build, dict):
            out.append(f"{name}: not built from docker/Dockerfile")
            continue
        context = (COMPOSE.parent / build.get("context", ".")).resolve()
        if context != REPO or not (context / build.get("dockerfile", "")).samefile(DOCKERFILE):
            out.append(f"{name}: builds {build} instead of the repository with docker/Dockerfile")
        for arg in build.get("args", {}):
            if arg not in args_declared:
                out.append(f"{name}: build argument {arg} is not declared in the Dockerfile")
        command = [str(a) for a in svc.get("command", [])]
        commands[name] = command
        entrypoint = svc.get("entrypoint")
        try:
            if entrypoint is None:  # the image's entrypoint: sweeper
                sweeper_parse(command)
            else:
                dask_parse([str(a) for a in entrypoint], command)
        except CommandLineError as exc:
            out.append(f"{name}: {' '.join(entrypoint or ['sweeper'])} {command}: {exc}")
    # Wiring: one scheduler address, one database, both services of this file.
    sched = commands.get("scheduler", [])
    address = f"tcp://scheduler:{option(sched, '--port') or 8786}"
    runner = commands.get("runner", [])
    if runner[:1] != ["run"] or option(runner, "--backend") != "dask":
        out.append("runner: not `sweeper run ... --backend dask`")
    if option(runner, "--scheduler") != address:
        out.append(f"runner: --scheduler {option(runner, '--scheduler')} is not {address}")
    if commands.get("dask-worker", [""])[0] != address:
        out.append(f"dask-worker: does not join {address}")
    replicas = services.get("dask-worker", {}).get("deploy", {}).get("replicas")
    if not str(replicas).isdigit() or int(replicas) < 1:
        out.append(f"dask-worker: deploy.replicas is {replicas!r}, not N >= 1")
    for name in ("runner", "sweeper-worker"):
        url = option(commands.get(name, []), "--db")
        parsed = make_url(url) if url else None
        if (
            parsed is None
            or parsed.drivername != "postgresql+psycopg"
            or parsed.host != "postgres"
            or parsed.username != pg_env.get("POSTGRES_USER")
            or parsed.database != pg_env.get("POSTGRES_DB")
        ):
            out.append(f"{name}: --db {url} is not the postgres service's database")
    out += secret_problems(doc, services)
    out += scheduler_problems(doc, services)
    if runner[1:2]:
        study = Path(services["runner"].get("working_dir", "/work")) / runner[1]
        if not (
            study.is_relative_to("/opt/sweeper/studies")
            and (REPO / "studies" / study.relative_to("/opt/sweeper/studies")).is_file()
            and "COPY studies /opt/sweeper/studies" in dockerfile
        ):
            out.append(f"runner: study {study} is not a study file the image holds")
    depends = services.get("runner", {}).get("depends_on", {})
    for needed in ("postgres", "scheduler"):
        if needed not in depends:
            out.append(f"runner: does not wait for {needed}")
    return out


@pytest.fixture(scope="module")
def doc() -> Any:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def test_compose_and_dockerfile_hold_together(doc: Any) -> None:
    assert problems(doc, DOCKERFILE.read_text(encoding="utf-8")) == []


def test_every_sweeper_service_runs_the_one_image(doc: Any) -> None:
    services = resolved(doc["services"])
    images = {svc["image"] for name, svc in services.items() if name != "postgres"}
    assert images == {"sweeper:latest"}
    assert services["runner"]["command"][:2] == ["run", "studies/quick.toml"]
    assert int(services["dask-worker"]["deploy"]["replicas"]) == 2


def test_no_password_in_argv_or_environment_and_the_scheduler_stays_inside(doc: Any) -> None:
    services = resolved(doc["services"])
    argv = json.dumps([svc.get("command", []) for svc in services.values()])
    env = json.dumps([svc.get("environment", {}) for svc in services.values()])
    password = (COMPOSE.parent / resolved(doc["secrets"])["postgres_password"]["file"]).read_text()
    assert password.strip() and password.strip() not in argv + env
    assert "POSTGRES_PASSWORD" not in env.replace("POSTGRES_PASSWORD_FILE", "")
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/postgres_password"
    )
    assert services["scheduler"]["command"][:2] == ["--host", "scheduler"]
    assert doc["networks"]["cluster"]["internal"] is True
    assert services["scheduler"]["networks"] == ["cluster"]
    assert services["postgres"]["networks"] == ["cluster"]
    # distributed's own parser agrees that the scheduler binds to that one host.
    assert dask_parse(["dask", "scheduler"], services["scheduler"]["command"])["host"] == (
        "scheduler"
    )


def test_the_image_never_holds_the_password_file() -> None:
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().split()
    assert "docker/postgres_password.txt" in ignore
    assert "COPY docker" not in DOCKERFILE.read_text() and "COPY . " not in DOCKERFILE.read_text()


def test_interpolation_uses_the_defaults() -> None:
    assert interpolate("a ${X:-b} ${Y-c} ${Z} d") == "a b c  d"


def _mutate(doc: Any, service: str, key: str, value: Any) -> Any:
    broken = copy.deepcopy(doc)
    broken["services"][service][key] = value
    return broken


@pytest.mark.parametrize(
    ("service", "key", "value", "expected"),
    [
        ("runner", "command", ["run", "studies/quick.toml", "--bogus"], "No such option"),
        ("runner", "command", ["rnu", "studies/quick.toml"], "No such command"),
        ("sweeper-worker", "command", ["worker", "--workers", "zero"], "--workers"),
        ("dask-worker", "command", ["tcp://scheduler:8786", "--nprocz", "1"], "No such option"),
        ("dask-worker", "command", ["tcp://scheduler:9999"], "does not join"),
        ("scheduler", "entrypoint", ["dask", "scheduer"], "unknown entrypoint"),
        ("runner", "build", {"context": ".", "dockerfile": "Dockerfile"}, "instead of"),
        ("runner", "depends_on", {"postgres": {}}, "does not wait for scheduler"),
        ("runner", "working_dir", "/work", "not a study file"),
        (
            "runner",
            "command",
            [
                "run",
                "studies/quick.toml",
                "--db",
                "postgresql+psycopg://sweeper:pw@postgres/sweeper",
                "--backend",
                "dask",
                "--scheduler",
                "tcp://scheduler:8786",
            ],
            "runner: a password on the command line",
        ),  # fmt: skip
        (
            "postgres",
            "environment",
            {"POSTGRES_USER": "sweeper", "POSTGRES_PASSWORD": "pw", "POSTGRES_DB": "sweeper"},
            "POSTGRES_PASSWORD in the environment",
        ),
        (
            "sweeper-worker",
            "environment",
            {"SWEEPER_DB": "postgresql+psycopg://sweeper:pw@postgres/sweeper"},
            "sweeper-worker: a password in $SWEEPER_DB",
        ),
        ("dask-worker", "secrets", [], "dask-worker: does not mount the secret"),
        ("runner", "environment", {"SWEEPER_DATA_DIR": "/data"}, "SWEEPER_DB_PASSWORD_FILE"),
        ("scheduler", "command", ["--host", "0.0.0.0", "--port", "8786"], "all interfaces"),
        ("scheduler", "command", ["--port", "8786"], "all interfaces"),
        ("scheduler", "command", ["--host", "elsewhere"], "not its name on the compose network"),
        ("scheduler", "ports", ["8786:8786"], "publishes ports"),
        ("scheduler", "networks", ["cluster", "default"], "network default, which is not internal"),
        (
            "scheduler",
            "healthcheck",
            {"test": ["CMD", "python", "-c", "socket.create_connection(('localhost', 8786))"]},
            "the healthcheck does not connect to scheduler",
        ),
    ],
)
def test_each_check_can_fail(doc: Any, service: str, key: str, value: Any, expected: str) -> None:
    found = problems(_mutate(doc, service, key, value), DOCKERFILE.read_text(encoding="utf-8"))
    assert any(expected in p for p in found), found


def test_wiring_checks_can_fail(doc: Any) -> None:
    dockerfile = DOCKERFILE.read_text(encoding="utf-8")
    broken = copy.deepcopy(doc)
    del broken["services"]["sweeper-worker"]
    runner = broken["services"]["runner"]["command"]
    runner[runner.index("--db") + 1] = "postgresql+psycopg://sweeper:sweeper@localhost/sweeper"
    runner[runner.index("--scheduler") + 1] = "tcp://elsewhere:8786"
    broken["services"]["dask-worker"]["deploy"] = {"replicas": 0}
    found = problems(broken, dockerfile)
    for expected in (
        "missing services: sweeper-worker",
        "runner: --db postgresql+psycopg://sweeper:sweeper@localhost/sweeper",
        "runner: --scheduler tcp://elsewhere:8786",
        "dask-worker: deploy.replicas is 0",
    ):
        assert any(p.startswith(expected) for p in found), (expected, found)


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('ENTRYPOINT ["sweeper"]', 'ENTRYPOINT ["python"]', "ENTRYPOINT"),
        ("ARG TORCH_INDEX=", "ARG TORCH_WHEELS=", "no build argument TORCH_INDEX"),
        ('".[postgres,parquet,dask]"', '".[parquet]"', "without the postgres extra"),
    ],
)
def test_dockerfile_checks_can_fail(doc: Any, old: str, new: str, expected: str) -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert old in text
    found = problems(doc, text.replace(old, new))
    assert any(expected in p for p in found), found
