"""Service configuration: one YAML file per service, `${ENV:default}` substitution.

The same loader serves `nameko run --config`, migrations and the command line,
so a value is read the same way everywhere. Secrets and keys live in files the
config names (`WatchedFile`), read again when they change, so rotating one needs no restart.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import yaml
from nameko.cli.main import setup_yaml_parser

log = logging.getLogger(__name__)
CHECK_FILES_EVERY = 2.0  # seconds between looks at a watched file

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


class WatchedFile:
    """A YAML (or JSON) file parsed again when its modification time changes; a broken new version
    is logged and the last good one kept, so a typo during rotation locks nobody out."""

    def __init__(self, path: str | Path, parse, what: str):
        self.path, self.parse, self.what = Path(path), parse, what
        self._stamp, self._checked = None, time.monotonic()
        self.value = self._read()  # at start a broken or missing file is an error
        self.version = 1  # goes up with every reload: what was derived from an older version is stale

    def _read(self):
        try:
            stamp = self.path.stat().st_mtime_ns
            value = self.parse(yaml.safe_load(self.path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ValueError(f"{self.what}: {self.path} does not exist (see README, Security model)") from None
        except Exception as exc:  # whatever the parser makes of a broken file
            raise ValueError(f"{self.what}: {self.path} is not usable: {exc}") from None
        self._stamp = stamp
        return value

    def current(self):
        now = time.monotonic()
        if now - self._checked >= CHECK_FILES_EVERY:
            self._checked = now
            try:
                if self.path.stat().st_mtime_ns != self._stamp:
                    self.value = self._read()
                    self.version += 1
                    log.warning("%s: reloaded %s", self.what, self.path)
            except (OSError, ValueError) as exc:
                log.error("%s: keeping the previous version: %s", self.what, exc)
        return self.value
