"""Loaded by pytest before the installed plugins (`-p tests.before_plugins` in pyproject's addopts).

`nameko test` monkey-patches the process with eventlet before pytest starts, and trio (a dependency
of selenium, for tests/browser) cannot even be imported then: its socket module wraps
`socket.socket.sendmsg`, which eventlet's green socket lacks. Two things would import it anyway:
- hypothesis (schemathesis's engine), which on import runs every "hypothesis" entry point, trio's
  among them: HYPOTHESIS_NO_PLUGINS=1 turns that off (this project registers none);
- anyio's pytest plugin, which imports each async backend to list them: `-p no:anyio` in addopts
  (no test here uses it).
This module must be imported before hypothesis, hence a `-p` plugin rather than a conftest.
"""
import os

os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")
