"""Who staff are: a role and an area, proved by a token (see tokens.py).

Pure: no framework here. Each service decides what a role may do with its own
tickets (e.g. services/dispatch/access.py); what they share is the principal,
the list of roles, and the area rule: an area code covers everything under it.

Area codes nest by prefix (city 3413 → county 341323 → town 341323104 →
village 341323104214), and a grid (341323104214-G10) covers only itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

GRID_WORKER = "grid_worker"              # 网格员: works the tickets assigned to them
VILLAGE_CADRE = "village_cadre"          # 村两委值班干部: the village's duty cadre
TOWN_DISPATCHER = "town_dispatcher"      # 乡镇调度
COUNTY_DISPATCHER = "county_dispatcher"  # 县调度中心
DEPARTMENT_STAFF = "department_staff"    # one of the 33 departments' staff
SUPERVISOR = "supervisor"                # 督办: reads, audits; acts on no ticket
VOLUNTEER = "volunteer"                  # 志愿者: answers their own offers
HOUSEHOLD_HEAD = "household_head"        # 联户长: a resident looking after about ten households, visits them
ADMIN = "admin"                          # operations: reads across its area
ROLES = (GRID_WORKER, VILLAGE_CADRE, TOWN_DISPATCHER, COUNTY_DISPATCHER, DEPARTMENT_STAFF, SUPERVISOR,
         VOLUNTEER, HOUSEHOLD_HEAD, ADMIN)

# who works a ticket assigned to them (the duty roster puts grid workers and cadres on duty)
WORKERS = frozenset({GRID_WORKER, VILLAGE_CADRE, DEPARTMENT_STAFF})
DISPATCHERS = frozenset({TOWN_DISPATCHER, COUNTY_DISPATCHER})
# who may look at tickets, queues and the ledger of their area
STAFF = frozenset(ROLES) - {VOLUNTEER, HOUSEHOLD_HEAD}

AREA_CODE = re.compile(r"^\d{4}(\d{2}(\d{3}(\d{3}(-G\d{2,3})?)?)?)?$")


class Unauthenticated(Exception):
    """No token, or one that does not prove anything: HTTP 401."""


class Forbidden(Exception):
    """A proved principal asking for what their role or area does not allow: HTTP 403.

    Messages never name another person (no assignee or volunteer id): a refusal must not
    tell the caller whom to impersonate.
    """


@dataclass(frozen=True)
class Principal:
    subject: str                   # the actor: a staff or volunteer id, never taken from a request body
    role: str                      # one of ROLES
    area: str                      # the area they answer for (see AREA_CODE)
    department: str | None = None  # department_staff: the department's code (e.g. civil)
    token_id: str | None = None    # jti, for the record and for revocation

    def covers(self, location: str | None) -> bool:
        """True when `location` (a grid, village, town or county code) lies inside this principal's area."""
        if not location:
            return False
        if "-" in self.area:  # a grid has nothing under it
            return location == self.area
        return location.startswith(self.area)

    def require(self, roles, location: str | None = None, what: str = "this") -> None:
        """Forbidden unless the role is one of `roles` and, when given, the location is in the area."""
        if self.role not in roles:
            raise Forbidden(f"a {self.role} may not {what}")
        if location is not None and not self.covers(location):
            raise Forbidden(f"{what}: outside your area ({self.area})")
