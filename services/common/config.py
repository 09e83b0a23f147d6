"""Service configuration: one YAML file per service, `${ENV:default}` substitution.

The same loader serves `nameko run --config`, migrations and the command line,
so a value is read the same way everywhere.
"""
from __future__ import annotations

from pathlib import Path

import yaml
from nameko.cli.main import setup_yaml_parser

SERVICES_DIR = Path(__file__).resolve().parent.parent
_parser_ready = False


def config_path(service: str) -> Path:
    return SERVICES_DIR / service / "config.yaml"


def load_config(path: str | Path) -> dict:
    global _parser_ready
    if not _parser_ready:
        setup_yaml_parser()  # nameko's `${VAR:default}` resolver on yaml.SafeLoader
        _parser_ready = True
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f) or {}


def service_config(service: str) -> dict:
    return load_config(config_path(service))
