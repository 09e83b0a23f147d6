"""A case as the service reads and writes it: a plain row, with prebuilt statements, not the ORM's unit of work.

Every ticket's path (opening, each console action, each event about it) loads its case, lets the pure rules
(lifecycle.py, calls.py) change it and writes it back. Through the ORM, the load and the flush of a changed
case cost two and a half times what the same row costs as a row: most of dispatch's time went on the ORM's
bookkeeping, not on the database (issue 11). Queries over many cases (queues, the ledger) stay ORM reads.

    case = load(s, ticket_id)        # locked for the transaction (PostgreSQL FOR UPDATE); None if unknown
    ...the rules change case...
    save(s, case)                     # writes the columns that changed, or inserts a new case

A case is saved before its transaction commits; `load` of the same case twice in a transaction is not done.
"""
from __future__ import annotations

from sqlalchemy import bindparam, insert, select, update

from .models import Case

CASES = Case.__table__
COLUMNS = tuple(CASES.c.keys())
READ = select(CASES).where(CASES.c.id == bindparam("id"))
READ_LOCKED = READ.with_for_update()
INSERT = insert(CASES)
_UPDATES: dict[frozenset, object] = {}  # one prebuilt UPDATE per set of columns changed (a handful in use)


class CaseRow:
    """A case's columns as attributes (those of models.Case), and what they were when read."""

    def __init__(self, values: dict, new: bool = False):
        self.__dict__.update(values)
        self._read = None if new else dict(values)

    def changes(self) -> dict:
        """The columns to write: all of a new case, else those that differ from what was read."""
        if self._read is None:
            return {name: getattr(self, name) for name in COLUMNS}
        return {name: value for name in COLUMNS if (value := getattr(self, name)) != self._read[name]}


def new(**values) -> CaseRow:
    """A case not yet in the database; columns not given are None."""
    unknown = set(values) - set(COLUMNS)
    if unknown:
        raise TypeError(f"not a column of cases: {', '.join(sorted(unknown))}")
    return CaseRow({name: values.get(name) for name in COLUMNS}, new=True)


def load(s, ticket_id: str, lock: bool = True) -> CaseRow | None:
    row = s.execute(READ_LOCKED if lock else READ, {"id": ticket_id}).mappings().first()
    return None if row is None else CaseRow(dict(row))


def save(s, case: CaseRow) -> None:
    """Write what changed (nothing: no statement); the case then counts as read as it is now."""
    changed = case.changes()
    if case._read is None:
        s.execute(INSERT, changed)
    elif changed:
        s.execute(_update_of(frozenset(changed)), {**{f"new_{k}": v for k, v in changed.items()}, "case_id": case.id})
    case._read = {name: getattr(case, name) for name in COLUMNS}


def _update_of(columns: frozenset):
    statement = _UPDATES.get(columns)
    if statement is None:
        statement = _UPDATES[columns] = (update(CASES).where(CASES.c.id == bindparam("case_id"))
                                         .values({name: bindparam(f"new_{name}") for name in sorted(columns)}))
    return statement
