"""What ops install matches the services: one systemd unit per service, hardened, migrating first."""
from __future__ import annotations

import configparser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "service.py").exists())
HARDENING = {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes", "ProtectHome": "yes"}


def unit(service: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(ROOT / "deploy" / "systemd" / f"songdaojia-{service}.service")
    return parser


@pytest.mark.parametrize("service", SERVICES)
def test_each_service_has_a_hardened_unit_that_migrates_before_it_starts(service):
    section = unit(service)["Service"]
    assert section["User"] == "songdaojia" and section["Group"] == "songdaojia"
    assert {k: section.get(k) for k in HARDENING} == HARDENING
    assert "/var/lib/songdaojia" in section["ReadWritePaths"]
    assert section["ExecStartPre"].endswith(f"songdaojia migrate {service}")
    assert f"services/{service}/config.yaml services.{service}.service:" in section["ExecStart"]
    login = "console-city" if service == "console" else service  # a console's login is a console's, of an area
    assert f"/etc/songdaojia/broker/songdaojia.{login}.env" in section["EnvironmentFile"]


def test_there_is_no_unit_for_a_service_that_does_not_exist():
    units = sorted(p.stem.removeprefix("songdaojia-") for p in (ROOT / "deploy" / "systemd").glob("*.service"))
    assert units == SERVICES


@pytest.mark.parametrize("service", SERVICES)
def test_the_later_stages_yield_the_processor_to_the_acknowledgement_s(service):
    """The same choice as the local stack (songdaojia/stack.py YIELDING): dispatch and volunteer weigh less."""
    from songdaojia.stack import YIELDING
    section = unit(service)["Service"]
    if service in YIELDING:
        assert int(section["CPUWeight"]) < 100 and int(section["Nice"]) == YIELDING[service]
    else:
        assert "CPUWeight" not in section and "Nice" not in section
    assert set(YIELDING) == {"dispatch", "volunteer", "outreach"}  # intake and notify carry the acknowledgement
