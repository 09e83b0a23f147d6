"""deploy/compose.yaml and deploy/Dockerfile match the services: no Docker engine is needed.

The services' code is the reference: every service of `songdaojia.stack.SERVICES` (and of services/) runs
from the image as `nameko run --config services/<name>/config.yaml services.<name>.service:<Class>`, as
two replicas, after its database is migrated and the broker's topology declared; every variable its
config.yaml reads without a default is set, and every file its config names is mounted read-only.
A new service, a renamed class or config, a new variable without a default, a file a config names that
is not mounted: each fails here, saying what and where.
"""
from __future__ import annotations

import ast
import importlib
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path, PurePosixPath
from unittest import mock

import pytest
import yaml

from songdaojia.stack import APPS as SERVICES  # the loop's four and the web console
from songdaojia.stack import LOGINS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
SHIM = DEPLOY / "rabbitmqctl-http.py"
SERVICE_DIRS = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "service.py").exists())
SECRETS_DIR = "/etc/songdaojia"  # where the containers see the keys folder (the configs' defaults)
VHOST = "songdaojia"  # deploy/secure.sh's default vhost: the broker logins' file names start with it
BROKER = "rabbitmq"
# what the image's entrypoint reads (deploy/Dockerfile), not the services: allowed next to config variables
ENTRYPOINT_VARIABLES = {"SDJ_ENV_FILES", "SDJ_DB_PASSWORD_FILE", "SDJ_SET_TO_HOSTNAME"}
# what a service's broker login file (broker/<vhost>.<service>.env, songdaojia/broker.py) sets
BROKER_ENV_VARIABLES = {"AMQP_URI", "SDJ_BROKER_PREFIX"}
VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?P<default>:[^}]*)?\}")
COMPOSE_VARIABLE = re.compile(r"\$(?:\$|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


# --- reading the files -------------------------------------------------------------------------------------


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def interpolate(value, required: set | None = None):
    """Compose's own interpolation with an empty environment: `${X:-d}` is d, `${X:?e}` is required
    (recorded, and shown as <X>), `$$` is `$`."""
    if isinstance(value, dict):
        return {k: interpolate(v, required) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, required) for v in value]
    if not isinstance(value, str):
        return value

    def one(match):
        if match.group(0) == "$$":
            return "$"
        if match.group("op") and match.group("op").endswith("?"):
            if required is not None:
                required.add(match.group("name"))
            return f"<{match.group('name')}>"
        return match.group("arg") or "" if match.group("op") else ""
    return COMPOSE_VARIABLE.sub(one, value)


def service(name: str) -> dict:
    services = compose()["services"]
    assert name in services, f"deploy/compose.yaml: no service {name!r} (services are {', '.join(services)})"
    return interpolate(services[name])


def env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def environment(name: str) -> dict[str, str]:
    """What compose gives the service's process: its env_file(s), overridden by its environment."""
    spec = service(name)
    env = {}
    files = spec.get("env_file") or []
    for item in [files] if isinstance(files, str) else files:
        path = DEPLOY / (item if isinstance(item, str) else item["path"])
        assert path.exists(), f"deploy/compose.yaml: {name}'s env_file {path} does not exist"
        env.update(env_file(path))
    declared = spec.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.partition("=")[::2] for item in declared)
    env.update({k: "" if v is None else str(v) for k, v in declared.items()})
    return env


def config_variables(name: str) -> dict[str, str | None]:
    """Every `${VAR}` / `${VAR:default}` of services/<name>/config.yaml: its default, None if it has none."""
    text = (ROOT / "services" / name / "config.yaml").read_text(encoding="utf-8")
    return {m["name"]: (m["default"][1:] if m["default"] else None) for m in VARIABLE.finditer(text)}


def loaded_config(name: str, env: dict[str, str]) -> dict:
    """The service's config as nameko reads it in the container (the broker login's variables stand in)."""
    from services.common.config import config_path, load_config
    stand_ins = {"AMQP_URI": f"amqp://{VHOST}.{name}:secret@{BROKER}:5672/{VHOST}", "SDJ_BROKER_PREFIX": VHOST}
    with mock.patch.dict(os.environ, {**stand_ins, **env}, clear=True):
        return load_config(config_path(name))


def mounts(name: str) -> dict[str, str]:
    """Path in the container -> what is mounted there read-only ("secret:<name>" or the volume's source)."""
    spec, found = service(name), {}
    for item in spec.get("secrets") or []:
        source, target = (item, item) if isinstance(item, str) else (item["source"], item.get("target", item["source"]))
        found[target if target.startswith("/") else f"/run/secrets/{target}"] = f"secret:{source}"
    for item in spec.get("volumes") or []:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) == 3 and "ro" in parts[2].split(","):
                found[parts[1]] = parts[0]
        elif item.get("read_only"):
            found[item["target"]] = item["source"]
    return found


def secret_file(source: str) -> PurePosixPath:
    """The file of a top-level secret, relative to the keys folder (${SDJ_SECRETS:-/etc/songdaojia})."""
    secrets = compose().get("secrets") or {}
    assert source in secrets, f"deploy/compose.yaml: secret {source!r} is used but not declared under secrets:"
    raw = secrets[source].get("file", "")
    assert raw.startswith("${SDJ_SECRETS:-/etc/songdaojia}/"), \
        f"deploy/compose.yaml: secret {source!r} is {raw!r}, not a file of the keys folder ${{SDJ_SECRETS}}"
    return PurePosixPath(raw.split("}/", 1)[1])


def depends(name: str) -> dict[str, str]:
    deps = service(name).get("depends_on") or {}
    if isinstance(deps, list):
        return {d: "service_started" for d in deps}
    return {d: (v or {}).get("condition", "service_started") for d, v in deps.items()}


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, heredoc bodies kept."""
    lines, out, i = DOCKERFILE.read_text(encoding="utf-8").splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.endswith("\\") and i < len(lines):
            line = line[:-1] + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?'?(\w+)'?", line)
        if heredoc and line.split()[0].upper() in ("COPY", "RUN"):
            body = []
            while i < len(lines) and lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            line += "\n" + "\n".join(body)
        instruction, _, args = line.strip().partition(" ")
        out.append((instruction.upper(), args.strip()))
    return out


def instructions(kind: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == kind]


def entrypoint_script() -> tuple[str, str]:
    """(path in the image, script) of the ENTRYPOINT the Dockerfile writes."""
    [entry] = instructions("ENTRYPOINT")
    program = json.loads(entry)[0]
    for args in instructions("COPY"):
        head, _, body = args.partition("\n")
        if body and (head.split()[-1] == program or PurePosixPath(head.split()[-1]).name == program):
            return head.split()[-1], body + "\n"
    raise AssertionError(f"deploy/Dockerfile: ENTRYPOINT {program!r} is not a script the Dockerfile writes")


APPS = sorted(SERVICES)
ONE_SHOTS = [f"{name}-migrate" for name in APPS] + ["topology", "secure"]


def app_port(name: str) -> int:
    address = environment(name)[f"{name.upper()}_HTTP"]
    host, _, port = address.rpartition(":")
    assert host == "0.0.0.0", f"deploy/compose.yaml: {name}: {name.upper()}_HTTP={address} must bind 0.0.0.0 " \
                              "(127.0.0.1 is unreachable from outside the container)"
    return int(port)


# --- every service, and nothing else -----------------------------------------------------------------------


def test_the_services_are_the_stacks():
    assert APPS == SERVICE_DIRS, f"songdaojia.stack.SERVICES {APPS} and services/*/service.py {SERVICE_DIRS} differ"


@pytest.mark.parametrize("name", APPS)
def test_each_service_has_its_database_a_migrate_job_and_itself(name):
    services = compose()["services"]
    for needed in (name, f"{name}-migrate", f"{name}-db"):
        assert needed in services, f"deploy/compose.yaml: service {name!r} has no {needed!r} under services:"


def test_no_service_runs_that_does_not_exist():
    for key, spec in compose()["services"].items():
        command = spec.get("command") or []
        if command[:2] == ["nameko", "run"]:
            module = command[-1].split(":")[0]
            assert module.split(".")[1] in SERVICES and key == module.split(".")[1], \
                f"deploy/compose.yaml: {key!r} runs {command[-1]}, which is not songdaojia.stack.SERVICES' " \
                "service of that name"
        base = key.removesuffix("-migrate").removesuffix("-db")
        if base != key:
            assert base in SERVICES, f"deploy/compose.yaml: {key!r} belongs to no service of songdaojia.stack"


# --- what runs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPS)
def test_the_service_runs_its_class_with_its_config(name):
    command = service(name).get("command")
    expected = ["nameko", "run", "--config", f"services/{name}/config.yaml",
                f"services.{name}.service:{SERVICES[name]}"]
    assert command == expected, f"deploy/compose.yaml: {name}.command is {command}, expected {expected} " \
                                "(as songdaojia/stack.py starts it)"
    assert (ROOT / expected[3]).exists(), f"{expected[3]} does not exist"
    module = importlib.import_module(f"services.{name}.service")
    assert hasattr(module, SERVICES[name]), f"services/{name}/service.py has no class {SERVICES[name]}"


@pytest.mark.parametrize("name", APPS)
def test_the_migrate_job_migrates_the_services_database(name):
    job = service(f"{name}-migrate")
    assert job.get("command") == ["songdaojia", "migrate", name], \
        f"deploy/compose.yaml: {name}-migrate.command is {job.get('command')}, expected songdaojia migrate {name}"
    key = f"{name.upper()}_DB_URL"
    ours, its = environment(name).get(key), environment(f"{name}-migrate").get(key)
    assert its and its == ours, f"deploy/compose.yaml: {name}-migrate migrates {key}={its}, {name} uses {ours}"
    assert mounts(f"{name}-migrate").get(environment(name)["SDJ_DB_PASSWORD_FILE"]) == \
        mounts(name).get(environment(name)["SDJ_DB_PASSWORD_FILE"]), \
        f"deploy/compose.yaml: {name}-migrate and {name} do not log in with the same database password file"
    assert job.get("restart") == "no", f"deploy/compose.yaml: {name}-migrate is a one-shot: restart must be \"no\""


# --- its environment ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPS)
def test_every_variable_the_config_needs_is_set(name):
    env = environment(name)
    given = set(env) | (BROKER_ENV_VARIABLES if f"{SECRETS_DIR}/broker/{VHOST}.{LOGINS.get(name, name)}.env" in
                        env.get("SDJ_ENV_FILES", "").split() else set())
    variables = config_variables(name)
    missing = sorted(v for v, default in variables.items() if default is None and v not in given)
    assert not missing, f"deploy/compose.yaml: {name} does not set {missing}, which services/{name}/config.yaml " \
                        "reads without a default"
    # in a container the defaults are wrong for these: they must be set
    for needed in ("AMQP_URI", "SDJ_BROKER_PREFIX", f"{name.upper()}_HTTP", f"{name.upper()}_DB_URL"):
        if needed in variables:
            assert needed in given, f"deploy/compose.yaml: {name} must set {needed} (its config's default is " \
                                    f"{variables[needed]!r}, wrong in a container)"
    unknown = sorted(set(env) - set(variables) - ENTRYPOINT_VARIABLES)
    assert not unknown, f"deploy/compose.yaml (with its env_file): {name} sets {unknown}, which " \
                        f"services/{name}/config.yaml does not read (renamed? a typo?)"


@pytest.mark.parametrize("name", APPS)
def test_the_broker_login_is_the_services_own(name):
    env = environment(name)
    login = f"{SECRETS_DIR}/broker/{VHOST}.{LOGINS.get(name, name)}.env"
    assert "AMQP_URI" not in env, f"deploy/compose.yaml: {name} sets AMQP_URI itself; its login is {login}"
    assert login in env.get("SDJ_ENV_FILES", "").split(), \
        f"deploy/compose.yaml: {name}'s SDJ_ENV_FILES ({env.get('SDJ_ENV_FILES')!r}) does not read {login}"
    mounted = mounts(name).get(login, "")
    assert mounted.startswith("secret:") and secret_file(mounted[7:]) == PurePosixPath(f"broker/{VHOST}.{LOGINS.get(name, name)}.env"), \
        f"deploy/compose.yaml: {login} in {name} is {mounted or 'not mounted'}, not the keys folder's " \
        f"broker/{VHOST}.{LOGINS.get(name, name)}.env"


@pytest.mark.parametrize("name", APPS)
def test_the_database_is_the_services_own_postgresql(name):
    env, db = environment(name), service(f"{name}-db")
    url = env[f"{name.upper()}_DB_URL"]
    from sqlalchemy.engine import make_url
    parsed = make_url(url)
    assert parsed.drivername.startswith("postgresql"), f"deploy/compose.yaml: {name} runs 2 replicas on {url}: " \
                                                       "several instances need PostgreSQL (README)"
    assert parsed.password is None, f"deploy/compose.yaml: {name}'s database URL carries its password in the " \
                                    "environment; it comes from SDJ_DB_PASSWORD_FILE"
    db_env = environment(f"{name}-db")
    assert (parsed.host, parsed.username, parsed.database) == (f"{name}-db", db_env["POSTGRES_USER"],
                                                               db_env["POSTGRES_DB"]), \
        f"deploy/compose.yaml: {name} connects to {url}, but {name}-db serves {db_env['POSTGRES_DB']} to " \
        f"{db_env['POSTGRES_USER']}"
    password = mounts(f"{name}-db").get(db_env["POSTGRES_PASSWORD_FILE"])
    assert password and password == mounts(name).get(env["SDJ_DB_PASSWORD_FILE"]), \
        f"deploy/compose.yaml: {name}-db's password ({password}) is not the file {name} logs in with"
    assert secret_file(password[7:]) == PurePosixPath(f"postgres/{name}.password"), \
        f"deploy/compose.yaml: {name}'s database password is {secret_file(password[7:])}, not postgres/{name}.password"
    networks = db.get("networks") or []
    assert networks == [f"{name}-db"] and compose()["networks"][f"{name}-db"].get("internal"), \
        f"deploy/compose.yaml: {name}-db must be alone on the internal network {name}-db (it is on {networks})"
    for other in APPS:
        if other != name:
            assert f"{name}-db" not in (service(other).get("networks") or []), \
                f"deploy/compose.yaml: {other} can reach {name}'s database (network {name}-db)"


@pytest.mark.parametrize("name", APPS)
def test_every_file_the_config_names_is_mounted_read_only(name):
    env = environment(name)
    config = loaded_config(name, env)
    found = mounts(name)

    def paths(value, where):
        if isinstance(value, dict):
            for k, v in value.items():
                yield from paths(v, f"{where}.{k}" if where else str(k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                yield from paths(v, f"{where}[{i}]")
        elif isinstance(value, str) and value.startswith("/"):
            yield where, value
    named = list(paths(config, ""))
    assert any(key == "AUTH.JWKS" for key, _ in named), f"services/{name}/config.yaml names no AUTH.JWKS file?"
    for key, path in named:
        assert path in found, f"deploy/compose.yaml: {name}'s config {key} is {path}, which is not mounted " \
                              f"read-only in {name} (mounted: {sorted(found)})"
        source = found[path]
        if source.startswith("secret:") and path.startswith(SECRETS_DIR + "/"):
            assert secret_file(source[7:]) == PurePosixPath(path).relative_to(SECRETS_DIR), \
                f"deploy/compose.yaml: {name} mounts {secret_file(source[7:])} of the keys folder at {path}"
    for path in env.get("SDJ_ENV_FILES", "").split() + [env.get("SDJ_DB_PASSWORD_FILE", "")]:
        if path:
            assert path in found, f"deploy/compose.yaml: {name} reads {path} at start, which is not mounted"


def test_the_files_mounted_from_the_keys_folder_are_those_secure_makes():
    from songdaojia.security import Secrets
    keys = Secrets(Path(SECRETS_DIR))
    made = {PurePosixPath(p.name) for p in (keys.jwks, keys.revoked, keys.gateways, keys.open311_clients)}
    made |= {PurePosixPath(f"broker/{VHOST}.{LOGINS.get(who, who)}.env") for who in APPS}  # secure's default console
    made |= {PurePosixPath(f"broker/{VHOST}.admin.uri")}
    made |= {PurePosixPath(f"postgres/{who}.password") for who in APPS}  # by the `secure` job itself
    for source in compose().get("secrets") or {}:
        assert secret_file(source) in made, f"deploy/compose.yaml: secret {source!r} is " \
                                            f"{secret_file(source)}, which `secure` does not make"
    assert keys.signing_key.name not in {str(secret_file(s)) for s in compose().get("secrets") or {}}, \
        "deploy/compose.yaml: the token signing key must stay in the keys folder, never in a container"


# --- health, ports, replicas -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPS)
def test_the_healthcheck_asks_the_port_the_service_listens_on(name):
    port = app_port(name)
    check = service(name).get("healthcheck") or {}
    test = check.get("test") or []
    assert test and test[0] == "CMD", f"deploy/compose.yaml: {name}.healthcheck.test must be [\"CMD\", …] " \
                                      "(the image has no shell tools such as curl)"
    urls = re.findall(r"https?://[^'\" ]+", " ".join(test))
    assert urls == [f"http://127.0.0.1:{port}/health/ready"], \
        f"deploy/compose.yaml: {name}'s healthcheck asks {urls}; it listens on {port}: " \
        f"expected http://127.0.0.1:{port}/health/ready"
    assert test[1] in ("python", "python3"), f"deploy/compose.yaml: {name}'s healthcheck runs {test[1]!r}, which " \
                                             "python:3.11-slim may not have"
    assert [str(p) for p in service(name).get("expose") or []] == [str(port)], \
        f"deploy/compose.yaml: {name} exposes {service(name).get('expose')}, it listens on {port}"


@pytest.mark.parametrize("name", APPS)
def test_the_later_stages_yield_the_processor_to_the_acknowledgement_s(name):
    from songdaojia.stack import YIELDING
    shares = service(name).get("cpu_shares", 1024)
    assert (shares < 1024) == (name in YIELDING), f"deploy/compose.yaml: {name}.cpu_shares is {shares}"


@pytest.mark.parametrize("name", APPS)
def test_each_service_runs_at_least_two_replicas(name):
    spec = service(name)
    replicas = (spec.get("deploy") or {}).get("replicas", 1)
    assert replicas >= 2, f"deploy/compose.yaml: {name}.deploy.replicas is {replicas}, expected at least 2"
    assert "container_name" not in spec and "hostname" not in spec, \
        f"deploy/compose.yaml: {name} names its container or host: its replicas would collide"
    assert not spec.get("ports"), f"deploy/compose.yaml: {name} publishes {spec['ports']}: replicas would " \
                                  "collide on the host port (a proxy on the network balances them)"


def test_a_notify_replica_claims_deliveries_under_its_own_name():
    for name in APPS:
        env, instance = environment(name), f"{name.upper()}_INSTANCE_ID"
        if instance in config_variables(name):
            assert instance in env.get("SDJ_SET_TO_HOSTNAME", "").split() or env.get(instance), \
                f"deploy/compose.yaml: {name} reads {instance}: give each replica its name (SDJ_SET_TO_HOSTNAME)"
            assert not env.get(instance), f"deploy/compose.yaml: {name}'s {instance} is fixed to {env[instance]!r}" \
                                          ": every replica would claim deliveries under the same name"


# --- the order things start in -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", APPS)
def test_the_service_starts_after_broker_database_migration_and_topology(name):
    expected = {BROKER: "service_healthy", f"{name}-db": "service_healthy",
                f"{name}-migrate": "service_completed_successfully", "topology": "service_completed_successfully"}
    got = depends(name)
    for dependency, condition in expected.items():
        assert got.get(dependency) == condition, f"deploy/compose.yaml: {name}.depends_on.{dependency} is " \
                                                 f"{got.get(dependency)!r}, expected condition {condition}"
    assert depends(f"{name}-migrate") == {f"{name}-db": "service_healthy"}, \
        f"deploy/compose.yaml: {name}-migrate must wait for {name}-db to be healthy, and only for it"
    for dependency in (BROKER, f"{name}-db"):
        assert service(dependency).get("healthcheck", {}).get("test"), \
            f"deploy/compose.yaml: {dependency} has no healthcheck: `service_healthy` would never hold"


def test_the_database_is_healthy_only_once_it_takes_connections_over_tcp():
    for name in APPS:
        test = service(f"{name}-db")["healthcheck"]["test"]
        assert "-h" in test and test[test.index("-h") + 1] == "127.0.0.1", \
            f"deploy/compose.yaml: {name}-db's healthcheck must ask over TCP (-h 127.0.0.1): during initdb the " \
            "image runs a server on its socket only, and a migration started then fails"


def test_the_topology_is_declared_as_the_vhosts_admin_before_any_service():
    job = service("topology")
    assert job.get("command") == ["songdaojia", "declare"], f"deploy/compose.yaml: topology runs {job.get('command')}"
    from songdaojia import cli
    with pytest.raises(SystemExit) as done:
        cli.main(["declare", "--help"])
    assert done.value.code == 0, "songdaojia has no `declare` command, which the topology job runs"
    env = environment("topology")
    admin = f"{env.get('SDJ_SECRETS')}/broker/{VHOST}.admin.uri"
    assert env.get("SDJ_SECRETS") == SECRETS_DIR and admin in mounts("topology"), \
        f"deploy/compose.yaml: topology must find the vhost's admin login at {admin} (SDJ_SECRETS)"
    assert depends("topology") == {BROKER: "service_healthy"}, "deploy/compose.yaml: topology waits for the broker"
    assert job.get("restart") == "no", "deploy/compose.yaml: topology is a one-shot: restart must be \"no\""
    assert env.get("SDJ_VAR_DIR", "").startswith("/tmp"), \
        "deploy/compose.yaml: topology's SDJ_VAR_DIR must be on the writable /tmp (the root is read-only)"


def test_secure_makes_the_logins_and_passwords_the_services_mount():
    job = service("secure")
    assert job.get("profiles") == ["setup"], "deploy/compose.yaml: secure is run by hand (profile setup), never by up"
    script = "\n".join(job["command"])
    [line] = [line for line in script.splitlines() if " secure " in line]
    words = shlex.split(line)
    assert words[0] == "songdaojia" and words[words.index("secure") + 1:words.index("secure") + 5] == \
        ["--dir", SECRETS_DIR, "--vhost", VHOST], f"deploy/compose.yaml: secure runs {line!r}"
    amqp = words[words.index("--amqp") + 1]
    hosts = [re.match(r"amqp://([^:/;]+)", part).group(1) for part in amqp.split(";")]
    assert all(host in compose()["services"] for host in hosts), \
        f"deploy/compose.yaml: secure's --amqp {amqp} names brokers that are not services: the logins it writes " \
        "would not reach them"
    for name in APPS:
        assert re.search(rf"\bfor service in [^;\n]*\b{name}\b", script), \
            f"deploy/compose.yaml: secure makes no database password for {name} (postgres/{name}.password)"
    volumes = job.get("volumes") or []
    assert [v["target"] for v in volumes] == [SECRETS_DIR] and not volumes[0].get("read_only"), \
        f"deploy/compose.yaml: secure must write the keys folder at {SECRETS_DIR}"
    env = environment("secure")
    ctl = shlex.split(env["SDJ_RABBITMQCTL"])
    assert ctl[-1] == f"/opt/songdaojia/deploy/{SHIM.name}" and SHIM.exists(), \
        f"deploy/compose.yaml: secure's SDJ_RABBITMQCTL {ctl} is not the image's {SHIM.name}"
    assert env["SDJ_RABBITMQ_API"].startswith(f"http://{BROKER}:15672/") and \
        service(BROKER)["image"].endswith("-management"), \
        "deploy/compose.yaml: secure reaches the broker's management API: the broker's image must serve it"


# --- who runs, and what may be written ---------------------------------------------------------------------


def test_nobody_runs_as_root():
    for key, spec in compose()["services"].items():
        user = str(spec.get("user", ""))
        assert user and user.split(":")[0] not in ("root", "0"), \
            f"deploy/compose.yaml: {key} runs as {user or 'the image default (often root)'}; set user:"
        assert "ALL" in (spec.get("cap_drop") or []), f"deploy/compose.yaml: {key} keeps its capabilities (cap_drop)"
        assert "no-new-privileges:true" in (spec.get("security_opt") or []), \
            f"deploy/compose.yaml: {key} may gain privileges (security_opt no-new-privileges:true)"


def test_our_containers_have_a_read_only_root_and_the_images_user():
    [user] = instructions("USER")
    for key in APPS + ONE_SHOTS:
        spec = service(key)
        assert spec.get("read_only") is True, f"deploy/compose.yaml: {key} must have a read-only root (read_only)"
        assert "/tmp" in (spec.get("tmpfs") or []), f"deploy/compose.yaml: {key} needs a writable /tmp (tmpfs)"
        assert str(spec.get("user")) == user, f"deploy/compose.yaml: {key} runs as {spec.get('user')}, the image " \
                                              f"(deploy/Dockerfile USER) as {user}"
        assert spec.get("image", "").startswith("songdaojia:") and \
            (spec.get("build") or {}).get("dockerfile") == "deploy/Dockerfile", \
            f"deploy/compose.yaml: {key} must run the image built from deploy/Dockerfile"
        assert (DEPLOY / spec["build"]["context"]).resolve() == ROOT, \
            f"deploy/compose.yaml: {key} builds from {spec['build']['context']}, not the repository's root"


def test_what_compose_requires_is_explained_at_its_top():
    required: set[str] = set()
    interpolate(compose(), required)
    header = COMPOSE.read_text(encoding="utf-8").split("\nname:", 1)[0]
    for variable in sorted(required):
        assert variable in header, f"deploy/compose.yaml requires {variable} (${{{variable}:?…}}) but its " \
                                   "header does not say how to set it"


def test_dollars_meant_for_the_shell_are_escaped_from_compose():
    text = COMPOSE.read_text(encoding="utf-8")
    for number, line in enumerate(text.splitlines(), 1):
        code = line.split(" #", 1)[0] if not line.lstrip().startswith("#") else ""
        bare = re.findall(r"(?<!\$)\$(?![${])\w*", code.replace("$$", ""))
        assert not bare, f"deploy/compose.yaml:{number}: {bare} would be replaced by compose; write $$ for the shell"


# --- the image ---------------------------------------------------------------------------------------------


def test_the_image_is_python_311_slim_with_the_pinned_dependencies():
    [base] = instructions("FROM")
    assert base.split()[0] == "python:3.11-slim", f"deploy/Dockerfile: FROM {base}, expected python:3.11-slim"
    runs = "\n".join(instructions("RUN"))
    assert "tomllib.load(open('pyproject.toml'" in runs and "['project']['dependencies']" in runs and \
        "pip install -r" in runs, "deploy/Dockerfile must install pyproject.toml's pinned [project] dependencies"
    assert "pip install --no-deps -e ." in runs, "deploy/Dockerfile must install the project itself (the commands)"
    pinned = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    loose = [d for d in pinned if "==" not in d and not d.startswith("setuptools")]
    assert not loose, f"pyproject.toml: {loose} are not pinned; the image would not be reproducible"


def test_the_image_holds_what_compose_runs():
    [workdir] = instructions("WORKDIR")
    copied = {}
    for args in instructions("COPY"):
        words = args.split("\n")[0].split()
        words = [w for w in words if not w.startswith("--")]
        if words[0].startswith("<<"):
            continue
        for source in words[:-1]:
            target = PurePosixPath(workdir) / words[-1]
            copied[source.rstrip("/")] = str(target / PurePosixPath(source).name) if words[-1].endswith("/") or \
                len(words) > 2 else str(target)
    for needed in ("pyproject.toml", "services", "songdaojia"):
        assert needed in copied, f"deploy/Dockerfile does not COPY {needed}"
    for name in APPS:
        config = PurePosixPath(workdir) / "services" / name / "config.yaml"
        assert str(config).startswith(copied["services"]), f"deploy/Dockerfile: {config} is not in the image"
    ctl = shlex.split(environment("secure")["SDJ_RABBITMQCTL"])[-1]
    assert ctl in copied.values(), f"deploy/compose.yaml runs {ctl}, which deploy/Dockerfile does not COPY " \
                                   f"(it copies {sorted(copied.values())})"
    assert (ROOT / PurePosixPath(ctl).relative_to(workdir)).exists()
    assert workdir == "/opt/songdaojia", f"deploy/Dockerfile: WORKDIR {workdir}: the config paths compose runs " \
                                         "are relative to /opt/songdaojia"
    scripts = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"])
    [cmd] = instructions("CMD")
    assert json.loads(cmd)[0] in scripts | {"nameko"}, f"deploy/Dockerfile: CMD {cmd} runs no installed command"
    for key in APPS + ONE_SHOTS:
        command = service(key).get("command") or []
        assert command and command[0] in scripts | {"nameko", "sh"}, \
            f"deploy/compose.yaml: {key} runs {command[:1]}, which the image does not install"


def test_the_entrypoint_reads_the_login_the_password_and_names_the_replica(tmp_path):
    path, script = entrypoint_script()
    (tmp_path / "entrypoint").write_text(script)
    login = tmp_path / "songdaojia.notify.env"
    login.write_text("AMQP_URI=amqp://songdaojia.notify:pw@rabbitmq:5672/songdaojia\nSDJ_BROKER_PREFIX=songdaojia\n")
    password = tmp_path / "db-password"
    password.write_text("0123abcd\n")
    env = {"PATH": os.environ["PATH"], "HOSTNAME": "c0ffee123456", "SDJ_ENV_FILES": str(login),
           "SDJ_DB_PASSWORD_FILE": str(password), "SDJ_SET_TO_HOSTNAME": "NOTIFY_INSTANCE_ID"}
    done = subprocess.run(["sh", str(tmp_path / "entrypoint"), "env"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"deploy/Dockerfile's {path} failed: {done.stderr}"
    seen = dict(line.partition("=")[::2] for line in done.stdout.splitlines())
    assert seen.get("AMQP_URI") == "amqp://songdaojia.notify:pw@rabbitmq:5672/songdaojia", done.stdout
    assert seen.get("SDJ_BROKER_PREFIX") == "songdaojia" and seen.get("PGPASSWORD") == "0123abcd", done.stdout
    assert seen.get("NOTIFY_INSTANCE_ID") == "c0ffee123456", done.stdout
    env["NOTIFY_INSTANCE_ID"] = "notify-1"  # set by ops: kept
    done = subprocess.run(["sh", str(tmp_path / "entrypoint"), "env"], env=env, capture_output=True, text=True)
    assert "NOTIFY_INSTANCE_ID=notify-1" in done.stdout.splitlines()
    env["SDJ_ENV_FILES"] = str(tmp_path / "missing.env")
    done = subprocess.run(["sh", str(tmp_path / "entrypoint"), "env"], env=env, capture_output=True, text=True)
    assert done.returncode != 0, f"deploy/Dockerfile's {path} starts the service without its broker login"


# --- the management API stands in for rabbitmqctl ----------------------------------------------------------


FAKE_MANAGEMENT_API = """
import http.server, json, sys
log, answer = sys.argv[1], int(sys.argv[2])
class Api(http.server.BaseHTTPRequestHandler):
    def record(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        with open(log, "a") as f:
            f.write(json.dumps([self.command, self.path, self.headers.get("Authorization"),
                                json.loads(body) if body else None]) + "\\n")
        self.send_response(answer)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = do_PUT = do_DELETE = record
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", 0), Api)
print(server.server_port, flush=True)
server.serve_forever()
"""


def _fake_management_api(tmp_path, answer: int):
    """A stand-in for RabbitMQ's management API in a process of its own (this one has eventlet's
    green http.server imported, by the services' modules); it logs every call it answers."""
    log = tmp_path / f"calls-{answer}.jsonl"
    log.touch()
    server = subprocess.Popen([sys.executable, "-c", FAKE_MANAGEMENT_API, str(log), str(answer)],
                              stdout=subprocess.PIPE, text=True)
    port = int(server.stdout.readline())
    return server, f"http://127.0.0.1:{port}/api", lambda: [json.loads(line) for line in log.read_text().splitlines()]


def _serving(tmp_path, answer: int):
    server, api, calls = _fake_management_api(tmp_path, answer)
    try:
        yield api, calls
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture
def management_api(tmp_path):
    yield from _serving(tmp_path, 204)


@pytest.fixture
def refusing_management_api(tmp_path):
    yield from _serving(tmp_path, 404)


def _shim(api: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SDJ_RABBITMQ_API": api, "SDJ_RABBITMQ_USER": "admin", "SDJ_RABBITMQ_PASSWORD": "pw",
           "SDJ_RABBITMQ_WAIT": "2"}
    return subprocess.run([sys.executable, str(SHIM), *args], env=env, capture_output=True, text=True, timeout=30)


def test_the_shim_does_every_rabbitmqctl_call_secure_makes(management_api, tmp_path):
    api, calls = management_api
    tree = ast.parse((ROOT / "songdaojia" / "broker.py").read_text(encoding="utf-8"))
    made = {node.args[0].value for node in ast.walk(tree) if isinstance(node, ast.Call)
            and getattr(node.func, "id", None) == "rabbitmqctl" and isinstance(node.args[0], ast.Constant)}
    assert made, "songdaojia/broker.py makes no rabbitmqctl call? (this test reads them from its source)"
    definitions = tmp_path / "definitions.json"
    definitions.write_text(json.dumps({"vhosts": [{"name": "songdaojia"}], "users": []}))
    examples = {"import_definitions": [str(definitions)], "clear_permissions": ["-p", "songdaojia", "guest"],
                "delete_user": ["songdaojia.intake"], "add_vhost": ["songdaojia"], "delete_vhost": ["songdaojia"],
                "set_permissions": ["-p", "songdaojia", "admin", ".*", ".*", ".*"]}
    missing = made - set(examples)
    assert not missing, f"songdaojia/broker.py calls rabbitmqctl {sorted(missing)}, which {SHIM.name} (and this " \
                        "test) do not cover"
    for command in sorted(made):
        done = _shim(api, command, *examples[command])
        assert done.returncode == 0, f"{SHIM.name} {command}: {done.stderr}"
    expected = {"import_definitions": ("POST", "/api/definitions"),
                "clear_permissions": ("DELETE", "/api/permissions/songdaojia/guest"),
                "delete_user": ("DELETE", "/api/users/songdaojia.intake")}
    for command in sorted(made):
        if command in expected:
            assert expected[command] in [(m, p) for m, p, _, _ in calls()], \
                f"{SHIM.name} {command} did not {expected[command]}: {calls()}"
    assert all(auth == "Basic YWRtaW46cHc=" for _, _, auth, _ in calls()), "not as the API's administrator"
    posted = [body for method, _, _, body in calls() if method == "POST"]
    assert posted == [json.loads(definitions.read_text())], "the definitions were not sent as they are"


def test_the_shim_fails_as_rabbitmqctl_does(refusing_management_api):
    api, calls = refusing_management_api
    done = _shim(api, "clear_permissions", "-p", "songdaojia", "guest")
    assert done.returncode == 1 and "404" in done.stderr, "a refused call must fail (secure ignores it for guest)"
    assert _shim(api, "list_users").returncode == 1, "an unknown command must fail, not pass silently"
    assert _shim("http://127.0.0.1:9/api", "delete_user", "x").returncode == 1, "an unreachable API must fail"
