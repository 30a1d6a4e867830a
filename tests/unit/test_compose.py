"""docker-compose.yml checked as far as we can without a Docker engine here.

The file parses, every service the design names is there, every TASKLEDGER_*
variable is a real setting, and every command is one the image can run.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


CELERY_ROLES = ("worker", "beat", "flower")


def test_all_roles_are_there() -> None:
    assert {"postgres", "redis", "migrate", "worker", "beat", "api", "flower"} <= set(SERVICES)


def test_no_service_is_defined_twice() -> None:
    # YAML keeps the last of two equal keys silently; count them in the text instead.
    names = re.findall(r"^  ([a-z_-]+):$", (ROOT / "docker-compose.yml").read_text(), re.M)
    assert len(names) == len(set(names)), names


def test_roles_are_plain_celery_commands() -> None:
    # Plain `celery -A workers.app worker` and `beat` are a complete deployment: no -Q,
    # the sweeps run on the default queue.
    assert "--autoscale=8,2" in SERVICES["worker"]["command"]
    for name in CELERY_ROLES:
        command = SERVICES[name]["command"]
        assert command[:4] == ["celery", "-A", "workers.app", name], name
    assert "-Q" not in SERVICES["worker"]["command"]
    assert SERVICES["migrate"]["command"] == ["taskledger", "db", "upgrade"]
    assert SERVICES["api"]["command"][:2] == ["taskledger", "api"]


def test_no_embedded_engine_or_sqlite_in_production() -> None:
    env = COMPOSE["x-taskledger-env"]
    assert env["TASKLEDGER_DATABASE_URL"].startswith("postgresql://")
    assert env["TASKLEDGER_BROKER_URL"].startswith("redis://")
    assert "sqlite" not in (ROOT / "docker-compose.yml").read_text().lower()


def test_environment_names_real_settings() -> None:
    fields = {f"TASKLEDGER_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES.items():
        for var in service.get("environment") or {}:
            if var.startswith("TASKLEDGER_"):
                assert var in fields, f"{name}: {var} is not a setting"


def test_roles_wait_for_a_migrated_database() -> None:
    for name in (*CELERY_ROLES, "api"):
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"


def test_dockerfile_copies_every_package() -> None:
    # the packages pyproject.toml installs, e.g. "models*" -> models
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = [p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]]
    assert "embedded" in packages
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in packages:
        assert f"COPY {package} ./{package}" in dockerfile, package
