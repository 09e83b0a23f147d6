"""What the console says, in zh-CN (the default) and en. A key missing in one language is a test failure
(tests/unit/test_console_rules.py), never a blank on the page."""
from __future__ import annotations

LANGUAGES = ("zh-CN", "en")

TEXTS: dict[str, tuple[str, str]] = {  # key: (zh-CN, en)
    "app": ("送到家 · 工作台", "Songdaojia console"),
    "skip": ("跳到主要内容", "Skip to main content"),
    "other_language": ("English", "中文"),
    "signin": ("登录", "Sign in"),
    "signout": ("退出", "Sign out"),
    "token": ("员工令牌", "Staff token"),
    "token_help": ("粘贴单位身份认证系统签发的令牌（JWT）。演示环境：./sdj run --keep-running 会打印各角色的令牌文件。",
                   "Paste the token (JWT) your identity provider issued. Demo: ./sdj run --keep-running prints a "
                   "token file for each role."),
    "signed_in_as": ("当前用户", "Signed in as"),
    "queue": ("工作队列", "Work queue"),
    "supervise": ("督办与台账", "Supervision and ledger"),
    "waiting": ("待签收 / 待派", "Waiting to be taken"),
    "in_hand": ("在办", "In hand"),
    "calls": ("待拨电话", "Calls to make"),
    "live": ("实时更新", "Live"),
    "offline": ("连接中断，正在重连…", "Connection lost, reconnecting…"),
    "updated": ("队列已更新", "Queue updated"),
    "none": ("暂无", "Nothing here"),
    "ticket": ("工单", "Ticket"),
    "category": ("类别", "Category"),
    "place": ("地点", "Place"),
    "state": ("状态", "State"),
    "priority": ("优先级", "Priority"),
    "due": ("时限", "Deadline"),
    "assignee": ("承办人", "Assignee"),
    "supervisor": ("督办人", "Supervised by"),
    "kind": ("类型", "Kind"),
    "overdue": ("已超时", "overdue"),
    "missed": ("超时次数", "deadlines missed"),
    "left": ("剩余", "left"),
    "vulnerable": ("重点人群", "vulnerable"),
    "unplaced": ("未落点", "not placed"),
    "asked": ("群众诉求", "What the resident asked"),
    "description": ("诉求内容", "Description"),
    "attributes": ("附加信息", "Details"),
    "address": ("地址", "Address"),
    "village": ("村（社区）", "Village"),
    "channel": ("渠道", "Channel"),
    "received_at": ("受理时间", "Received"),
    "resident": ("群众", "Resident"),
    "contact": ("联系方式", "Contact"),
    "call": ("查看号码并拨打", "Show number and call"),
    "call_reason": ("拨打原因", "Reason for the call"),
    "call_logged": ("本次查看已记录", "This read is on the record"),
    "history": ("处理记录", "History"),
    "at": ("时间", "When"),
    "event": ("事项", "Event"),
    "actor": ("经办", "By"),
    "note": ("说明", "Note"),
    "actions": ("办理", "Actions"),
    "actions_help": ("能否办理由系统按您的角色和辖区判定。", "What you may do is decided by the services, by your role and area."),
    "accept": ("签收", "Accept"),
    "start": ("开始办理", "Start"),
    "resolve": ("办结", "Resolve"),
    "return": ("退单", "Return"),
    "reassign": ("改派", "Reassign"),
    "place_it": ("落点到村", "Place in a village"),
    "file": ("报送部门（代办）", "File with the department"),
    "decide": ("部门决定", "Record the decision"),
    "transfer": ("转办部门", "Transfer to a department"),
    "cancel": ("撤销工单", "Cancel the ticket"),
    "department": ("部门代码（如 power、hrss）", "Department code (e.g. power, hrss)"),
    "approved": ("批准", "approved"),
    "not_approved": ("不予批准", "not approved"),
    "decision": ("决定内容", "Decision"),
    "task_done": ("记录结果", "Record the outcome"),
    "outcome": ("结果", "Outcome"),
    "reason": ("原因", "Reason"),
    "grid_code": ("网格编号", "Grid code"),
    "assignee_id": ("或人员编号", "or a person's id"),
    "village_code": ("村（社区）代码（12 位）", "Village code (12 digits)"),
    "done": ("已完成：", "Done: "),
    "overdue_tickets": ("超时工单", "Overdue tickets"),
    "escalated_tickets": ("已升级 / 督办工单", "Escalated and supervised tickets"),
    "ledger": ("台账", "Ledger"),
    "period": ("统计期", "Period"),
    "all_time": ("全部", "All time"),
    "show": ("查看", "Show"),
    "download_csv": ("下载 CSV", "Download CSV"),
    "by_level": ("按区域", "By area"),
    "trend": ("近 7 日趋势", "The last 7 days"),
    "day": ("日期", "Day"),
    "received": ("受理", "Received"),
    "ack_rate": ("10 秒回应率", "Acknowledged in 10 s"),
    "accept_rate": ("按时签收率", "Accepted on time"),
    "resolve_rate": ("按时办结率", "Resolved on time"),
    "satisfaction": ("满意率", "Satisfaction"),
    "reopen_rate": ("重办率", "Reopen rate"),
    "overdue_now": ("当前超时", "Overdue now"),
    "total": ("合计", "Total"),
    "chart_resolve": ("按时办结率（按区域）", "Resolved on time, by area"),
    "chart_trend": ("每日受理量与按时办结率", "Received per day and resolved on time"),
    "error": ("出错了", "Something went wrong"),
    "back": ("返回工作队列", "Back to the work queue"),
    "forbidden": ("无权查看或办理", "Not yours to see or act on"),
    "not_found": ("没有这个页面或工单", "No such page or ticket"),
    "csrf": ("表单已失效，请刷新页面后重试。", "This form has expired: reload the page and try again."),
    "bad_token": ("令牌无效", "That token proves nothing"),
    "not_staff": ("此工作台供工作人员使用", "This console is for staff"),
    "service_away": ("后台服务暂时无法应答，请稍后再试。", "A service did not answer; try again shortly."),
    "signed_out": ("已退出", "Signed out"),
}

STATES = {
    "received": ("已受理", "received"), "routed": ("已派单", "routed"), "offered": ("待签收", "offered"),
    "accepted": ("已签收", "accepted"), "in_progress": ("办理中", "in progress"), "returned": ("已退单", "returned"),
    "escalated": ("已升级", "escalated"), "filed": ("已报部门", "filed with the department"),
    "resolved": ("已办结", "resolved"), "followed_up": ("已回访", "followed up"), "closed": ("已关闭", "closed"),
    "reopened": ("重办", "reopened"), "cancelled": ("已撤销", "cancelled"),
}

CHANNELS = {
    "hotline": ("12345 热线", "hotline"), "wechat": ("微信", "WeChat"), "miniprogram": ("小程序", "mini-program"),
    "counter": ("便民服务中心窗口", "service counter"), "grid_visit": ("网格员走访", "grid worker's visit"),
    "night_talk": ("乡村夜话", "village night talk"), "open311": ("Open311", "Open311"),
}

ROLES = {
    "grid_worker": ("网格员", "grid worker"), "village_cadre": ("村两委值班干部", "village duty cadre"),
    "town_dispatcher": ("乡镇调度", "town dispatcher"), "county_dispatcher": ("县调度中心", "county dispatcher"),
    "department_staff": ("部门工作人员", "department staff"), "supervisor": ("督办", "supervisor"),
    "admin": ("管理员", "administrator"), "volunteer": ("志愿者", "volunteer"),
    "household_head": ("联户长", "household head"),
}

TASK_KINDS = {
    "callback": ("10 秒回拨", "call back"), "follow_up": ("回访", "follow-up call"),
    "reach": ("联系群众（通知未送达）", "reach the resident (no message got through)"),
}

OUTCOMES = {
    "reached": ("已联系上", "reached"), "not_reached": ("未联系上", "not reached"),
    "need_confirmed": ("诉求已核实", "need confirmed"), "unreached": ("未联系上", "unreached"),
    "satisfied": ("满意", "satisfied"), "unsatisfied": ("不满意", "unsatisfied"),
    "unreachable": ("联系不上", "unreachable"),
}

CALL_REASONS = (("回访", "follow-up"), ("上门", "visit"), ("核实诉求", "confirm the need"))

DONE = {  # the action just done, for the message after it
    "accept": "accept", "start": "start", "resolve": "resolve", "return": "return", "reassign": "reassign",
    "place": "place_it", "task": "task_done", "file": "file", "decide": "decide", "transfer": "transfer",
    "cancel": "cancel",
}


def language(value: str | None) -> str:
    return value if value in LANGUAGES else LANGUAGES[0]


class Texts:
    """`t("queue")`, `t.state("offered")`… in one language."""

    def __init__(self, lang: str):
        self.lang = language(lang)
        self._i = 0 if self.lang == "zh-CN" else 1

    def __call__(self, key: str) -> str:
        return TEXTS[key][self._i]

    def _of(self, table: dict, key) -> str:
        pair = table.get(key)
        return pair[self._i] if pair else str(key or "")

    def state(self, key):
        return self._of(STATES, key)

    def channel(self, key):
        return self._of(CHANNELS, key)

    def role(self, key):
        return self._of(ROLES, key)

    def task_kind(self, key):
        return self._of(TASK_KINDS, key)

    def outcome(self, key):
        return self._of(OUTCOMES, key)

    def reasons(self) -> list[tuple[str, str]]:
        """(value sent, label shown): the value is the Chinese word, the record's language."""
        return [(zh, zh if self._i == 0 else en) for zh, en in CALL_REASONS]
