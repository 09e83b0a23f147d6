"""Browser tests: Debian's headless Chromium driven through Selenium, pages checked with axe-core.

Everything comes from the machine, nothing is downloaded at test time: `deploy/ensure-browser.sh`
(run by `./sdj test`) installs Debian's `chromium` and `chromium-driver` (/usr/bin/chromium,
/usr/bin/chromedriver) and axe-core from npm into var/npm (version pinned by package.json and
package-lock.json beside this file). Selenium is always handed both paths, so Selenium Manager is
never asked to find or fetch a browser or a driver (SE_OFFLINE=true besides).

Fixtures:
- `chromium` (session): one headless Chromium shared by the session's tests.
- `page` (function): that shared Chromium, reset for the test: about:blank, no cookies, no
  storage, no cache, desktop viewport. The usual one.
- `browser` (function): a factory, `browser(width=1280, height=900) -> WebDriver`, each call a new
  Chromium with its own fresh profile (its own cookie jar): two people signed in at once. All are
  quit at the end of the test.
When a test fails, the page of each browser it used is saved under var/artefacts/screenshots/
(`failed-<test>-<n>.png`). The browser tests are skipped, saying why, only where /usr/bin/chromium
is missing.

Helpers (import them: `from tests.browser.conftest import axe_violations, wait_for, ...`):
- `resize(driver, width, height)`: the viewport (what the page sees as innerWidth/innerHeight),
  not the window, becomes width x height. `as_desktop(driver)`: 1280 x 900.
- `as_phone(driver, width=390, height=844, scale=1)`: a phone: 390 x 844 viewport, mobile
  (the page's <meta name=viewport> counts), touch.
- `axe_violations(driver, impacts=("serious", "critical"))`: axe-core's WCAG 2.0/2.1 A and AA
  rules on the current page; `format_violations(violations)` for an assertion message.
- `screenshot(driver, name, full_page=False) -> Path`: var/artefacts/screenshots/<name>.png.
- `wait_for(driver, condition, timeout=10.0, what="")`: polls with a deadline (tests/waiting.py).
- `page_timing(driver)`: load time and bytes from the Navigation and Resource Timing APIs.

Pitfalls this handles: running as root Chromium needs --no-sandbox; --disable-dev-shm-usage
keeps Chromium off a small /dev/shm (containers); each browser gets a fresh temporary
--user-data-dir (never ~/.config/chromium: no shared profile, no lock between two browsers);
--headless=new draws a window frame, so a 1280x900 *window* is a 1280x757 viewport: `resize`
sets the viewport instead. Script injection through WebDriver is not subject to the page's
Content-Security-Policy (script-src 'self' blocks the page's own inline scripts, not axe).
"""
from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
AXE_JS = REPO / "var" / "npm" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO / "var" / "artefacts" / "screenshots"

DESKTOP = (1280, 900)
PHONE = (390, 844)
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",                     # root (CI) cannot use Chromium's sandbox
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",  # no update checks, no safe-browsing lists: no outside traffic
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",          # /dev/shm is small in containers; Chromium crashes when it runs out
)
_FRAME = (0, 0)  # window size minus viewport size, learnt by `resize` (headless=new draws a frame)
WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa")
SKIP_REASON = (f"Debian's Chromium is not installed ({CHROMIUM} missing): "
               "deploy/ensure-browser.sh installs it (./sdj test runs it)")

# Selenium Manager is never started (Service gets the driver's path), and if it were it must
# neither download anything nor send usage statistics.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")


# --- starting and stopping --------------------------------------------------------


def start_chromium(width: int = DESKTOP[0], height: int = DESKTOP[1]):
    """A new headless Chromium with a fresh temporary profile, viewport width x height.

    Stop it with `quit_chromium(driver)` (which also removes the profile). Set
    SDJ_CHROMEDRIVER_LOG=<file> to get chromedriver's verbose log.
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip(SKIP_REASON)
    if not os.path.exists(CHROMEDRIVER):
        pytest.fail(f"{CHROMEDRIVER} is missing (Debian package chromium-driver): run deploy/ensure-browser.sh",
                    pytrace=False)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sdj-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    frame_w, frame_h = _FRAME  # so that the viewport is width x height from the start
    options.add_argument(f"--window-size={width + frame_w},{height + frame_h}")
    log = os.environ.get("SDJ_CHROMEDRIVER_LOG")
    service = Service(executable_path=CHROMEDRIVER,
                      **({"log_output": log, "service_args": ["--verbose"]} if log else {}))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except BaseException:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver._sdj_profile = profile  # removed by quit_chromium
    driver.set_script_timeout(30)
    try:
        resize(driver, width, height)
    except BaseException:
        quit_chromium(driver)
        raise
    return driver


def quit_chromium(driver) -> None:
    """Quit the browser (and its chromedriver) and remove its temporary profile."""
    try:
        driver.quit()
    finally:
        profile = getattr(driver, "_sdj_profile", None)
        if profile:
            shutil.rmtree(profile, ignore_errors=True)


def reset(driver) -> None:
    """Make a used browser look new to the next test: about:blank, no cookies, storage or cache
    (for every site), desktop viewport."""
    handles = driver.window_handles
    for extra in handles[1:]:  # windows/tabs a test opened
        driver.switch_to.window(extra)
        driver.close()
    driver.switch_to.window(handles[0])
    driver.get("about:blank")
    driver.execute_cdp_cmd("Network.clearBrowserCookies", {})
    driver.execute_cdp_cmd("Network.clearBrowserCache", {})
    for origin in _visited_origins(driver):
        driver.execute_cdp_cmd("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
    as_desktop(driver)


def _visited_origins(driver) -> set[str]:
    # The origins of the pages this tab has been on: its navigation history, kept across tests.
    history = driver.execute_cdp_cmd("Page.getNavigationHistory", {})
    origins = set()
    for entry in history.get("entries", []):
        m = re.match(r"(https?://[^/]+)", entry.get("url", ""))
        if m:
            origins.add(m.group(1))
    return origins


# --- fixtures ---------------------------------------------------------------------


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item._sdj_call_failed = report.failed
    return report


def _keep_failure_pictures(request: pytest.FixtureRequest, drivers: list) -> None:
    if not getattr(request.node, "_sdj_call_failed", False):
        return
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", request.node.name)[:120]
    for n, driver in enumerate(drivers, 1):
        try:
            screenshot(driver, f"failed-{stem}-{n}")
        except Exception:  # a crashed browser has nothing to show; the failure itself is reported anyway
            pass


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole session (use `page` to get it reset for a test)."""
    driver = start_chromium()
    yield driver
    quit_chromium(driver)


@pytest.fixture
def page(chromium, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's Chromium, reset: about:blank, no cookies/storage/cache, 1280x900 viewport."""
    reset(chromium)
    yield chromium
    _keep_failure_pictures(request, [chromium])


@pytest.fixture
def browser(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """Factory of independent browsers: `alice = browser(); bob = browser(*PHONE)`.

    Each is a separate Chromium with its own temporary profile (own cookies, storage and
    cache); all are quit when the test ends.
    """
    drivers: list = []

    def open_browser(width: int = DESKTOP[0], height: int = DESKTOP[1]):
        driver = start_chromium(width, height)
        drivers.append(driver)
        return driver

    yield open_browser
    _keep_failure_pictures(request, drivers)
    errors = []
    for driver in drivers:
        try:
            quit_chromium(driver)
        except Exception as exc:  # quit the others all the same
            errors.append(exc)
    if errors:
        raise errors[0]


# --- viewport ---------------------------------------------------------------------


def resize(driver, width: int, height: int) -> tuple[int, int]:
    """Make the viewport (innerWidth x innerHeight) width x height; ends any phone emulation.

    Headless Chromium's window has a frame (a 1280x900 window is a 1280x757 viewport), so the
    window is sized by what the page reports. Returns the viewport as measured.
    """
    global _FRAME
    if getattr(driver, "_sdj_phone", False):
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver._sdj_phone = False
    inner = _viewport(driver)
    if inner != (width, height):
        outer = driver.get_window_size()
        _FRAME = (outer["width"] - inner[0], outer["height"] - inner[1])
        driver.set_window_size(width + _FRAME[0], height + _FRAME[1])
        inner = _viewport(driver)
    return inner


def as_desktop(driver) -> tuple[int, int]:
    """A 1280 x 900 desktop viewport."""
    return resize(driver, *DESKTOP)


def as_phone(driver, width: int = PHONE[0], height: int = PHONE[1], scale: float = 1) -> tuple[int, int]:
    """Emulate a phone: a width x height viewport (390 x 844 by default), mobile, touch.

    Mobile means the page's <meta name="viewport"> is honoured as on a phone: a page without
    one is laid out 980 px wide and shrunk. `scale` is the device pixel ratio (screenshots are
    width*scale pixels wide). The emulation lasts across navigations until `resize`/`as_desktop`.
    Returns (innerWidth, innerHeight) of the current page.
    """
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": scale, "mobile": True,
        "screenWidth": width, "screenHeight": height,
    })
    driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 5})
    driver._sdj_phone = True
    return _viewport(driver)


def _viewport(driver) -> tuple[int, int]:
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    return int(width), int(height)


# --- waiting ----------------------------------------------------------------------


GONE_NODE = "Node with given id does not belong to the document"


def wait_for(driver, condition: Callable[[Any], Any] | str, timeout: float = 10.0, what: str = "") -> Any:
    """Poll `condition(driver)` until it returns something truthy, and return that.

    `condition` may also be a CSS selector: then it waits for a displayed element matching it and
    returns the element. Selenium's expected_conditions fit as they are. While polling, an element
    not there yet or gone stale counts as "not yet". Fails (AssertionError, via
    tests.waiting.wait_until) with `what`, the page's URL and the last such error.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By

    if isinstance(condition, str):
        selector = condition
        what = what or f"a visible {selector!r}"

        def condition(d):  # noqa: F811 - the selector's own condition
            element = d.find_element(By.CSS_SELECTOR, selector)
            return element if element.is_displayed() else None

    last_error: list[str] = []

    def probe():
        try:
            return condition(driver)
        except (NoSuchElementException, StaleElementReferenceException) as exc:
            last_error[:] = [f"{type(exc).__name__}: {exc.msg}"]
            return None
        except WebDriverException as exc:
            if GONE_NODE not in (exc.msg or ""):
                raise
            # chromedriver's words for a stale element when the page replaced it between finding and reading
            last_error[:] = [f"{type(exc).__name__}: {exc.msg}"]
            return None

    def describe() -> str:
        name = what or getattr(condition, "__qualname__", repr(condition))
        try:
            where = driver.current_url
        except Exception:
            where = "?"
        return f"{name} (page {where}{'; last: ' + last_error[0] if last_error else ''})"

    return wait_until(probe, timeout=timeout, interval=0.05, message=describe)


# --- accessibility ----------------------------------------------------------------

_AXE_SOURCE: str | None = None

_AXE_RUN = """
const [tags, done] = [arguments[0], arguments[arguments.length - 1]];
axe.run(document, {runOnly: {type: "tag", values: tags}, resultTypes: ["violations"]})
  .then(r => done({violations: r.violations.map(v => ({
          id: v.id, impact: v.impact, help: v.help, helpUrl: v.helpUrl,
          nodes: v.nodes.map(n => ({target: n.target, html: n.html, summary: n.failureSummary}))}))}),
        e => done({error: String(e && e.stack || e)}));
"""


def _axe_source() -> str:
    global _AXE_SOURCE
    if _AXE_SOURCE is None:
        if not AXE_JS.is_file():
            pytest.fail(f"{AXE_JS.relative_to(REPO)} is missing: run deploy/ensure-browser.sh (./sdj test runs it)",
                        pytrace=False)
        _AXE_SOURCE = AXE_JS.read_text(encoding="utf-8")
    return _AXE_SOURCE


def _target_text(target) -> str:
    # axe's target: one selector per frame level, each a string or (shadow DOM) a list of strings
    if isinstance(target, list):
        return " >> ".join(_target_text(t) for t in target)
    return str(target)


def axe_violations(driver, impacts: tuple[str, ...] | None = ("serious", "critical"),
                   tags: tuple[str, ...] = WCAG_TAGS) -> list[dict]:
    """Run axe-core's WCAG 2.0/2.1 A+AA rules on the current page; the violations of `impacts`.

    Each: {"id", "impact", "help", "helpUrl", "targets": [css selector, ...], "nodes": [{"target",
    "html", "summary"}, ...]}. `impacts=None`: every impact (minor and moderate too). axe is
    injected through WebDriver, which the page's Content-Security-Policy does not restrict; it
    is injected again after every navigation.
    """
    if not driver.execute_script("return typeof window.axe === 'object' && typeof window.axe.run === 'function'"):
        driver.execute_script(_axe_source())
    result = driver.execute_async_script(_AXE_RUN, list(tags))
    if "error" in result:
        raise AssertionError(f"axe.run failed on {driver.current_url}: {result['error']}")
    found = []
    for v in result["violations"]:
        if impacts is not None and v["impact"] not in impacts:
            continue
        nodes = [{**n, "target": _target_text(n["target"])} for n in v["nodes"]]
        found.append({"id": v["id"], "impact": v["impact"], "help": v["help"], "helpUrl": v["helpUrl"],
                      "targets": [n["target"] for n in nodes], "nodes": nodes})
    return found


def format_violations(violations: list[dict]) -> str:
    """Readable text for an assertion message: one line per violation, one per element."""
    lines = []
    for v in violations:
        lines.append(f"[{v['impact']}] {v['id']}: {v['help']} ({v['helpUrl']})")
        for n in v["nodes"]:
            lines.append(f"    {n['target']}: {n['html'][:160]}")
    return "\n".join(lines) or "no violations"


# --- pictures ---------------------------------------------------------------------


def screenshot(driver, name: str, full_page: bool = False) -> Path:
    """Save a PNG of the page to var/artefacts/screenshots/<name>.png and return its path.

    `full_page`: the whole document, not just the viewport (Chromium's own capture beyond the
    viewport; the page is not resized). `name` may contain '/' for a subfolder.
    """
    safe = "/".join(re.sub(r"[^A-Za-z0-9._-]+", "_", part) for part in name.split("/") if part not in ("", ".", ".."))
    path = SCREENSHOTS / f"{safe or 'screenshot'}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if full_page:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics.get("cssContentSize") or metrics["contentSize"]
        width = max(size["width"], _viewport(driver)[0])  # the content's width leaves out a scrollbar
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": width, "height": size["height"], "scale": 1},
        })
        path.write_bytes(base64.b64decode(shot["data"]))
    else:
        path.write_bytes(driver.get_screenshot_as_png())
    return path


# --- timing -----------------------------------------------------------------------

_TIMING = """
const nav = performance.getEntriesByType("navigation")[0];
if (!nav || !nav.loadEventEnd) return null;
const res = performance.getEntriesByType("resource");
return {
  url: nav.name,
  response_to_load_ms: nav.loadEventEnd - nav.responseStart,
  request_to_load_ms: nav.loadEventEnd - nav.requestStart,
  document_bytes: nav.transferSize,
  document_body_bytes: nav.encodedBodySize,
  resource_bytes: res.reduce((sum, r) => sum + r.transferSize, 0),
  resources: res.length,
  resources_from_cache: res.filter(r => r.transferSize === 0 && r.decodedBodySize > 0).length,
};
"""


def page_timing(driver, timeout: float = 10.0) -> dict:
    """How the current page loaded (Navigation and Resource Timing), once its load event ended.

    {"url", "response_to_load_ms" (responseStart -> loadEventEnd), "request_to_load_ms"
    (requestStart -> loadEventEnd), "document_bytes" (transferred: headers + body as sent),
    "document_body_bytes", "resource_bytes" (transferred, all resources loaded so far),
    "total_bytes", "resources", "resources_from_cache"}. A resource served from the cache
    transfers 0 bytes (`reset`/a fresh `browser` starts with an empty cache); a cross-origin one
    without Timing-Allow-Origin reports 0 too.
    """
    timing = wait_for(driver, lambda d: d.execute_script(_TIMING), timeout=timeout,
                      what="the page's load event (Navigation Timing loadEventEnd)")
    timing["total_bytes"] = timing["document_bytes"] + timing["resource_bytes"]
    return timing


__all__ = [
    "AXE_JS", "CHROMEDRIVER", "CHROMIUM", "CHROMIUM_FLAGS", "DESKTOP", "PHONE", "SCREENSHOTS", "WCAG_TAGS",
    "as_desktop", "as_phone", "axe_violations", "format_violations", "page_timing", "quit_chromium", "reset",
    "resize", "screenshot", "start_chromium", "wait_for",
]


# --- what the console's pages measured ---------------------------------------------------------------

CONSOLE_FIGURES: list[dict] = []  # tests/browser/test_console.py: each page's load time and weight, live offers


def pytest_terminal_summary(terminalreporter):
    """How fast the console's pages loaded and what they weighed, and how long a live offer took to show (also
    in var/artefacts/console.jsonl): the issue's 200 ms and one second, measured in the browser."""
    if not CONSOLE_FIGURES:
        return
    terminalreporter.section("console pages (var/artefacts/console.jsonl)")
    for figure in CONSOLE_FIGURES:
        if "offer_to_screen_ms" in figure:
            terminalreporter.write_line(f"live offer: on screen {figure['offer_to_screen_ms']} ms after dispatch "
                                        f"offered it")
        else:
            terminalreporter.write_line(f"{figure['page']:<22} {figure['request_to_load_ms']:>7.1f} ms request to load, "
                                        f"{figure['total_bytes']:>6} bytes with what it loaded")
