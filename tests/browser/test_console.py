"""The web console (services/console) in Debian's headless Chromium, on the whole stack: a grid worker sees
an offer arrive live and works it, another village's worker can neither see nor act on it, forms need the
CSRF token, a supervisor sees an overdue ticket and the ledger, the pages work on a 390-px phone and in
English, and axe-core finds no serious or critical accessibility problem on any page. Screenshots of every
page go to var/artefacts/screenshots/console-*.png; how long the pages took to load and what they weighed,
and how long a live offer took to show, to var/artefacts/console.jsonl and the terminal summary.

What a person may do is decided by dispatch and intake: these tests check the console shows their answer."""
from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select

from services.intake.client import IntakeClient
from songdaojia.signins import CSRF_FIELD, SignIn, grid_worker_on_duty, sign_in_over_http
from songdaojia.stack import APPS
from songdaojia.vhosts import throwaway_vhost
from tests.browser.conftest import CONSOLE_FIGURES as RECORDED
from tests.browser.conftest import as_phone, axe_violations, format_violations, page_timing, screenshot, wait_for
from tests.e2e.requests_helpers import submission
from tests.stacks import started_stack
from tests.waiting import wait_until

VILLAGE = "341323104214"        # 杨东村委会, 杨疃镇, 灵璧县
OTHER_VILLAGE = "341323100001"  # 太平社区, in another town of the county
ADDRESS = "杨东村三组12号"
ARTEFACTS = Path(__file__).resolve().parents[2] / "var" / "artefacts"
# deadlines at 1/100: a 2-hour accept deadline in 72 s (time to work a ticket), a 10-minute one in 6 s
DISPATCH_SCALE = 0.01
SUPERVISOR = SignIn("supervisor", "S-341323-1", "341323")
TOWN_DISPATCHER = SignIn("town_dispatcher", "D-341323104-1", "341323104")
COUNTY_DISPATCHER = SignIn("county_dispatcher", "D-341323-1", "341323")


class Console:
    """The running stack with its console, and what the tests do around it."""

    def __init__(self, running):
        self.running, self.stack = running, running.stack
        self.url = self.stack.http("console")

    def token(self, person: SignIn) -> str:
        claims = {"department": person.department} if person.department else {}
        return self.stack.secrets.token(person.subject, person.role, person.area, **claims)

    def headers(self, person: SignIn) -> dict:
        return {"Authorization": f"Bearer {self.token(person)}"}

    def submit(self, category: str, village: str = VILLAGE, address: str = ADDRESS, channel: str = "wechat",
               description: str | None = None) -> str:
        """A resident's request through the AMQP intake, as an outside channel publishes it: its ticket number
        (each in words of its own: nearly the same words in the same village would join the open ticket)."""
        description = description or f"{address}门口的路灯坏了，请派人修理"
        body = submission(int(time.time() * 1000) % 10**8, channel=channel, category=category, village_code=village,
                          address=address, description=description)
        with IntakeClient(self.stack.uri("publisher-channels"), source="browser-tests") as client:
            queue = client.receipt_queue()
            client.submit(channel, body, reply_to=queue)
            receipt = client.receipts(queue, timeout=20)
        assert receipt and receipt[0]["data"]["status"] == "received", receipt
        return receipt[0]["data"]["ticket_no"]

    def case(self, ticket: str) -> dict:
        answer = requests.get(f"{self.stack.http('dispatch')}/tickets/{ticket}", headers=self.headers(SUPERVISOR),
                              timeout=10)
        return answer.json() if answer.status_code == 200 else {}

    def wait_state(self, ticket: str, state: str, timeout: float = 20) -> dict:
        return wait_until(lambda: (case := self.case(ticket)).get("state") == state and case,
                          timeout=timeout, message=f"{ticket} {state} in dispatch")

    def sign_in(self, driver, person: SignIn) -> None:
        """Sign in with the keyboard only: the token typed into its field, Tab to the button, Enter."""
        driver.get(f"{self.url}/signin")
        field = driver.find_element(By.ID, "token")
        field.send_keys(self.token(person))
        field.send_keys(Keys.TAB)
        button = driver.switch_to.active_element
        assert button.get_attribute("type") == "submit", "Tab from the token goes to the sign-in button"
        button.send_keys(Keys.ENTER)
        wait_for(driver, lambda d: d.current_url.endswith("/queue"), what="the work queue after signing in")

    def session(self, person: SignIn) -> tuple[requests.Session, str]:
        """Signed in over plain HTTP (a second person beside the browser): the session and its CSRF token."""
        return sign_in_over_http(self.url, self.token(person))


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    base = os.environ.get("SDJ_TEST_AMQP") or "amqp://guest:guest@127.0.0.1:5672/"
    with throwaway_vhost(base) as vhost_uri, started_stack(
            tmp_path_factory.mktemp("console") / "var", vhost_uri, names=tuple(APPS),
            sla_scales={"dispatch": DISPATCH_SCALE}) as running:
        yield Console(running)


def checked(driver, name: str) -> None:
    """A page as it stands: screenshot, accessibility (axe-core: no serious or critical violation), timing."""
    screenshot(driver, f"console-{name}", full_page=True)
    violations = axe_violations(driver)
    assert not violations, f"{name}: {format_violations(violations)}"
    timing = page_timing(driver)
    RECORDED.append({"page": name, "request_to_load_ms": round(timing["request_to_load_ms"], 1),
                     "document_bytes": timing["document_bytes"], "total_bytes": timing["total_bytes"]})


def text_of(driver, selector: str) -> str:
    return driver.find_element(By.CSS_SELECTOR, selector).text


def test_a_grid_worker_sees_an_offer_arrive_live_and_works_it(console, page):
    worker = grid_worker_on_duty(VILLAGE, ADDRESS, datetime.now(timezone.utc))
    console.sign_in(page, worker)
    assert "sdj_session" not in page.execute_script("return document.cookie"), "the session cookie is HttpOnly"
    wait_for(page, '#live[data-state="following"]', what="the live queue following the worker's grid")
    checked(page, "queue-empty")
    page.execute_script("window.__sameDocument = true")

    ticket = console.submit("633", description="村口路灯不亮，晚上出行不便")  # 路灯报修: accept in 60 min (36 s)
    row = wait_for(page, f'tr[data-ticket="{ticket}"]', timeout=20, what="the new offer in the queue")
    seen = datetime.now(timezone.utc)
    assert page.execute_script("return window.__sameDocument === true"), "the offer came without a reload"
    offered = next(h for h in console.case(ticket)["history"] if h["event"] == "ticket_offered")
    RECORDED.append({"page": "live offer", "offer_to_screen_ms":
                     round((seen - datetime.fromisoformat(offered["at"])).total_seconds() * 1000)})
    assert "路灯报修" in row.text and "杨东村委会" in row.text and "待签收" in row.text
    assert re.search(r"剩余 \d+:\d\d:\d\d", row.text), row.text  # the countdown to the accept deadline
    checked(page, "queue-offer")

    row.find_element(By.LINK_TEXT, ticket).click()
    wait_for(page, "#asked-h")
    asked = text_of(page, "main")
    for shown in ("村口路灯不亮，晚上出行不便", ADDRESS, "灵璧县杨疃镇杨东村委会", "微信", "王**"):
        assert shown in asked, shown
    assert "13" not in text_of(page, "#masked-phone")[:2], "the phone is masked until a call is asked for"
    checked(page, "ticket-offered")

    Select(page.find_element(By.ID, "call-reason")).select_by_value("核实诉求")
    page.find_element(By.ID, "call").click()
    phone = wait_for(page, "#phone", what="the resident's number, once asked for")
    assert re.fullmatch(r"138\d{8}", phone.text) and phone.get_attribute("href") == f"tel:{phone.text}"
    reads = requests.get(f"{console.stack.http('intake')}/contact-reads", params={"ticket_no": ticket},
                         headers=console.headers(SUPERVISOR), timeout=10).json()
    assert [(r["staff_id"], r["reason"], r["granted"]) for r in reads] == [(worker.subject, "核实诉求", True)]

    for action, state in (("accept", "已签收"), ("start", "办理中")):
        page.find_element(By.ID, f"do-{action}").click()
        wait_for(page, lambda d: text_of(d, "#state") == state, what=f"{state} after {action}")
    checked(page, "ticket-in-progress")
    page.find_element(By.ID, "resolve-note").send_keys("已更换灯泡，路灯恢复照明")
    page.find_element(By.ID, "do-resolve").click()
    wait_for(page, lambda d: text_of(d, "#state") == "已办结", what="resolved")
    assert "已完成：办结" in text_of(page, "main")
    case = console.wait_state(ticket, "resolved", timeout=5) or console.case(ticket)
    assert case["assignee_id"] == worker.subject
    assert any(h["event"] == "ticket_resolved" and h["actor"] == worker.subject and h["note"] == "已更换灯泡，路灯恢复照明"
               for h in case["history"])
    checked(page, "ticket-resolved")


def test_a_grid_worker_of_another_village_can_neither_see_nor_act_on_a_ticket(console, page):
    ticket = console.submit("633", address="杨东村五组3号")
    case = console.wait_state(ticket, "offered")
    stranger = grid_worker_on_duty(OTHER_VILLAGE, "太平社区1栋", datetime.now(timezone.utc))
    console.sign_in(page, stranger)
    assert page.find_elements(By.CSS_SELECTOR, f'tr[data-ticket="{ticket}"]') == [], "not in their queue"
    page.get(f"{console.url}/tickets/{ticket}")
    alert = wait_for(page, '[role="alert"]')
    assert "无权查看或办理" in text_of(page, "h1") and "403" in text_of(page, "h1")
    assert case["assignee_id"] not in alert.text, "a refusal names nobody"
    checked(page, "ticket-forbidden")

    http, csrf = console.session(stranger)
    refused = http.post(f"{console.url}/tickets/{ticket}/accept", data={"csrf": csrf}, timeout=10)
    assert refused.status_code == 403 and "无权查看或办理" in refused.text
    assert console.case(ticket)["state"] == "offered", "dispatch refused: nothing changed"


def test_every_form_needs_the_csrf_token(console, page):
    ticket = console.submit("633", address="杨东村七组8号")
    case = console.wait_state(ticket, "offered")
    worker = SignIn("grid_worker", case["assignee_id"], case["grid_code"])
    http, csrf = console.session(worker)
    cookie = next(c for c in http.cookies if c.name == "sdj_session")
    assert cookie.has_nonstandard_attr("HttpOnly") and cookie.get_nonstandard_attr("SameSite") == "Strict"
    assert not cookie.secure, "plain HTTP on this machine: Secure only behind TLS"
    for form in ({}, {"csrf": "not-the-token"}, {"csrf": ""}):
        refused = http.post(f"{console.url}/tickets/{ticket}/accept", data=form, timeout=10)
        assert refused.status_code == 403 and "表单已失效" in refused.text, form
    assert console.case(ticket)["state"] == "offered"
    assert http.post(f"{console.url}/signout", data={}, timeout=10).status_code == 403, "sign-out needs it too"
    assert http.post(f"{console.url}/signin", data={"token": console.token(worker)}, timeout=10).status_code == 403

    # behind a TLS proxy (it says so): Secure cookies, which a client sends back over TLS only (by hand here)
    form = requests.get(f"{console.url}/signin", headers={"X-Forwarded-Proto": "https"}, timeout=10)
    assert "Secure" in form.headers["Set-Cookie"]
    signed_in = requests.post(f"{console.url}/signin", headers={"X-Forwarded-Proto": "https"},
                              cookies={"sdj_signin": re.search(r"sdj_signin=([^;]+)", form.headers["Set-Cookie"])[1]},
                              data={"token": console.token(worker),
                                    "csrf": CSRF_FIELD.search(form.text)[1]},
                              allow_redirects=False, timeout=10)
    assert signed_in.status_code == 303 and re.search(r"sdj_session=[^;]+;.*Secure", signed_in.headers["Set-Cookie"])

    accepted = http.post(f"{console.url}/tickets/{ticket}/accept", data={"csrf": csrf}, timeout=10)
    assert accepted.status_code == 200 and "已完成：签收" in accepted.text
    assert console.case(ticket)["state"] == "accepted"


def test_a_supervisor_sees_an_overdue_ticket_and_the_ledger(console, page):
    # 供水管道漏水报修: 10 minutes to accept (6 s here); nobody does: overdue, and it climbs the ladder
    ticket = console.submit("652", village=OTHER_VILLAGE, address="太平社区2栋", description="自来水管漏水")
    wait_until(lambda: console.case(ticket).get("overdue_count", 0) > 0, timeout=30, message="the missed deadline")
    console.sign_in(page, SUPERVISOR)
    page.get(f"{console.url}/supervise")
    overdue = wait_for(page, f'#overdue tr[data-ticket="{ticket}"]', what="the ticket among the overdue")
    assert "供水管道漏水报修" in overdue.text and "太平社区" in overdue.text
    assert page.find_elements(By.CSS_SELECTOR, f'#escalated tr[data-ticket="{ticket}"]'), "and among the escalated"
    ledger = text_of(page, "#ledger")
    assert "灵城镇" in ledger and "合计" in ledger and "按时办结率" in ledger  # the town of its ticket
    assert "太平社区" in text_of(page, "#ledger-finer"), "and, under the towns, the villages"
    assert len(page.find_elements(By.CSS_SELECTOR, "svg.chart rect.bar")) >= 2, "charts by area and by day"
    checked(page, "supervise")

    csv_text = page.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById("csv").href, {credentials: "same-origin"}).then(r => r.text()).then(done);""")
    header, *rows = csv_text.strip().splitlines()
    assert header.startswith("key,name,") and "received" in header and rows, csv_text[:300]


def test_the_queue_and_a_ticket_work_on_a_phone_and_in_english(console, page):
    ticket = console.submit("633", address="杨东村九组1号")
    case = console.wait_state(ticket, "offered")
    as_phone(page)
    console.sign_in(page, SignIn("grid_worker", case["assignee_id"], case["grid_code"]))
    wait_for(page, f'tr[data-ticket="{ticket}"]')
    assert page.execute_script("return document.documentElement.scrollWidth") <= 390, "no sideways scrolling"
    checked(page, "phone-queue")
    page.get(f"{console.url}/tickets/{ticket}")
    wait_for(page, "#do-accept")
    assert page.execute_script("return document.documentElement.scrollWidth") <= 390
    checked(page, "phone-ticket")

    page.find_element(By.CSS_SELECTOR, "a.lang").click()
    wait_for(page, lambda d: d.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en", what="English")
    assert "What the resident asked" in text_of(page, "main") and "Accept" in text_of(page, "#do-accept")
    checked(page, "phone-ticket-en")


def test_returning_reassigning_placing_and_calling_back_through_the_console(console):
    """The other actions, as plain form posts: a worker returns a ticket, the town's dispatcher reassigns it,
    the county's dispatcher places a request known only by a map point, a worker records the callback of a
    hotline request."""
    ticket = console.submit("633", address="杨东村十组2号")
    case = console.wait_state(ticket, "offered")
    worker, worker_csrf = console.session(SignIn("grid_worker", case["assignee_id"], case["grid_code"]))
    returned = worker.post(f"{console.url}/tickets/{ticket}/return", data={"csrf": worker_csrf, "reason": "不在本网格"},
                           timeout=10)
    assert returned.status_code == 200 and "已完成：退单" in returned.text
    console.wait_state(ticket, "returned")
    town, town_csrf = console.session(TOWN_DISPATCHER)
    assert "改派" in town.get(f"{console.url}/tickets/{ticket}", timeout=10).text
    other_grid = f"{VILLAGE}-G01" if case["grid_code"] != f"{VILLAGE}-G01" else f"{VILLAGE}-G02"
    bad = town.post(f"{console.url}/tickets/{ticket}/reassign", data={"csrf": town_csrf, "reason": "改派"}, timeout=10)
    assert bad.status_code == 400, "neither a grid nor a person: dispatch says which field"
    moved = town.post(f"{console.url}/tickets/{ticket}/reassign",
                      data={"csrf": town_csrf, "grid_code": other_grid, "reason": "属一网格"}, timeout=10)
    assert moved.status_code == 200 and "已完成：改派" in moved.text
    assert console.case(ticket)["grid_code"] == other_grid

    unplaced = requests.post(f"{console.stack.http('intake')}/open311/v2/requests.json", data={
        "api_key": console.stack.secrets.open311_key("county-portal"), "service_code": "633", "lat": "33.55",
        "long": "117.55",
        "description": "路灯不亮", "phone": "13800001111"}, timeout=10).json()[0]["service_request_id"]
    console.wait_state(unplaced, "offered")
    county, county_csrf = console.session(COUNTY_DISPATCHER)
    placed = county.post(f"{console.url}/tickets/{unplaced}/place",
                         data={"csrf": county_csrf, "village_code": VILLAGE}, timeout=10)
    assert placed.status_code == 200 and "已完成：落点到村" in placed.text
    assert console.case(unplaced)["village_code"] == VILLAGE

    hotline = console.submit("633", address="杨东村十一组5号", channel="hotline")
    case = console.wait_state(hotline, "offered")
    caller, caller_csrf = console.session(SignIn("grid_worker", case["assignee_id"], case["grid_code"]))
    page_text = caller.get(f"{console.url}/tickets/{hotline}", timeout=10).text
    task = re.search(r'/tickets/[^/]+/tasks/(\d+)"', page_text)
    assert task, "the 10-second callback is on the worker's page"
    done = caller.post(f"{console.url}/tickets/{hotline}/tasks/{task.group(1)}",
                       data={"csrf": caller_csrf, "outcome": "need_confirmed", "note": "已回拨"}, timeout=10)
    assert done.status_code == 200 and "已完成：记录结果" in done.text
    assert any(h["event"] == "task_done" and h["actor"] == case["assignee_id"] for h in console.case(hotline)["history"])


@pytest.fixture(scope="module", autouse=True)
def record_pages():
    yield
    if RECORDED:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        with open(ARTEFACTS / "console.jsonl", "a", encoding="utf-8") as f:
            for record in RECORDED:
                f.write(json.dumps({"at": datetime.now(timezone.utc).isoformat(), **record}, ensure_ascii=False) + "\n")


def test_the_console_follows_the_areas_of_open_pages_only(console):
    """Its queue on dispatch.work is bound to the areas of the queue pages open now (a city's console does not
    carry the whole city's work for three signed-in villages), and unbound when the last one closes."""
    from songdaojia.vhosts import rabbitmqctl
    cadre = SignIn("village_cadre", "V-341323100001-1", OTHER_VILLAGE)
    key = f"area.3413.341323.341323100.{OTHER_VILLAGE}.#"

    def bound() -> bool:
        rows = rabbitmqctl("list_bindings", "-q", "-p", console.stack.vhost, "--no-table-headers",
                           "source_name", "destination_name", "routing_key").splitlines()
        return any(row.split("\t")[0] == "dispatch.work" and row.split("\t")[-1] == key for row in rows)

    http, _ = console.session(cadre)
    with http.get(f"{console.url}/events", stream=True, timeout=10) as stream:
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        lines = stream.iter_lines(decode_unicode=True)
        wait_until(lambda: "following" in next(lines), timeout=10, message="the page told its area is followed")
        assert bound(), f"{key} bound while the page is open"
    wait_until(lambda: not bound(), timeout=30, interval=1, message=f"{key} unbound once the page closed")


def test_a_proxy_item_filed_and_decided_and_a_ticket_transferred_and_cancelled_through_the_console(console):
    """代办: the village's proxy clerk accepts and files with the department, whose staff record the decision;
    the county's dispatcher transfers a ticket to a department's desk (转办), then cancels it."""
    proxy = console.submit("101", description="帮父亲办理城乡居民养老保险参保登记")  # decided by hrss
    case = console.wait_state(proxy, "offered")
    assert (case["handling"], case["assignee_id"]) == ("proxy", f"P-{VILLAGE}")
    clerk, clerk_csrf = console.session(SignIn("village_cadre", case["assignee_id"], VILLAGE))
    assert clerk.post(f"{console.url}/tickets/{proxy}/accept", data={"csrf": clerk_csrf}, timeout=10).ok
    filed = clerk.post(f"{console.url}/tickets/{proxy}/file", data={"csrf": clerk_csrf, "note": "材料齐全"}, timeout=10)
    assert filed.status_code == 200 and "已完成：报送部门（代办）" in filed.text
    assert console.case(proxy)["state"] == "filed"
    hrss, hrss_csrf = console.session(SignIn("department_staff", "hrss-1", "341323", department="hrss"))
    undecided = hrss.post(f"{console.url}/tickets/{proxy}/decide", data={"csrf": hrss_csrf, "decision": "同意"},
                          timeout=10)
    assert undecided.status_code == 400 and "approved" in undecided.text, "dispatch names the missing field"
    decided = hrss.post(f"{console.url}/tickets/{proxy}/decide",
                        data={"csrf": hrss_csrf, "approved": "true", "decision": "同意参保"}, timeout=10)
    assert decided.status_code == 200 and "已完成：部门决定" in decided.text
    assert any(h["event"] == "ticket_decided" and h["actor"] == "hrss-1" for h in console.case(proxy)["history"])

    ticket = console.submit("633", address="杨东村十二组7号")
    console.wait_state(ticket, "offered")
    county, county_csrf = console.session(COUNTY_DISPATCHER)
    moved = county.post(f"{console.url}/tickets/{ticket}/transfer",
                        data={"csrf": county_csrf, "department": "housing", "reason": "属住建部门职责"}, timeout=10)
    assert moved.status_code == 200 and "已完成：转办部门" in moved.text
    assert console.case(ticket)["assignee_id"] == "dept-housing-341323"
    cancelled = county.post(f"{console.url}/tickets/{ticket}/cancel", data={"csrf": county_csrf, "reason": "重复来电"},
                            timeout=10)
    assert cancelled.status_code == 200 and "已完成：撤销工单" in cancelled.text
    assert console.case(ticket)["state"] == "cancelled"
