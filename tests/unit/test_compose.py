"""docker-compose.yml checked as far as we can without a Docker engine here.

The file parses, every service the design names is there, every TASKLEDGER_*
variable is a real setting, and every command is one the image can run.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from models.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]


def test_all_roles_are_there() -> None:
    assert {"postgres", "redis", "migrate", "worker", "sweeper", "beat", "flower"} <= set(SERVICES)


def test_worker_autoscales_and_beat_and_flower_use_the_app() -> None:
    assert "--autoscale=8,2" in SERVICES["worker"]["command"]
    for name in ("worker", "sweeper", "beat", "flower"):
        command = SERVICES[name]["command"]
        assert command[:3] == ["celery", "-A", "workers.app"], name
    assert SERVICES["migrate"]["command"] == ["taskledger", "db", "upgrade"]


def test_environment_names_real_settings() -> None:
    fields = {f"TASKLEDGER_{name.upper()}" for name in Settings.model_fields}
    for name, service in SERVICES.items():
        for var in service.get("environment") or {}:
            if var.startswith("TASKLEDGER_"):
                assert var in fields, f"{name}: {var} is not a setting"


def test_roles_wait_for_a_migrated_database() -> None:
    for name in ("worker", "sweeper", "beat", "flower"):
        deps = SERVICES[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["postgres"]["condition"] == "service_healthy"


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("models", "jobs", "workers", "beat", "cli"):
        assert f"COPY {package} ./{package}" in dockerfile
