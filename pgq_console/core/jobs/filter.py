"""The filter line: words parsed into a `JobFilter`, a `Predicate` over the alias `job`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pgq_console.core.actions import Predicate
from pgq_console.core.errors import ConsoleError

SEARCH_SCAN_CAP = 200_000
# Held failures have no index in PgQueuer: without the Database screen's (core/jobs/held.py) a
# `status:failed` page looks at the newest this many ids only (at most that many rows: p95
# under 100 ms at 2M rows), and the screen says so.
HELD_SCAN_CAP = 100_000
STATUSES = ("queued", "picked", "failed")
_PSEUDO_STATUS = {
    "ready": "(job.status = 'queued' AND job.execute_after <= now())",
    "deferred": "(job.status = 'queued' AND job.execute_after > now())",
}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_COMPARE = re.compile(r"^(>=|<=|>|<|=)?(-?\d+)$")
_QUALIFIERS = ("ep", "status", "id", "prio", "age", "payload", "header")


@dataclass(frozen=True)
class JobFilter:
    """A parsed filter line; `predicate()` is its SQL."""

    text: str = ""
    terms: tuple[Predicate, ...] = ()
    searches_content: bool = False  # payload:/header: present (unindexed scan)
    reads_held: bool = False  # status:failed present (no index unless the console's own)

    def predicate(self) -> Predicate:
        """The filter's words AND-ed (no content-scan bound: see `scope`)."""
        if not self.terms:
            return Predicate("TRUE", (), "all jobs")
        result = self.terms[0]
        for term in self.terms[1:]:
            result = result.and_(term)
        return result

    def scan_capped(self, *, held_index: bool = False) -> bool:
        """Whether `scope` looks at the newest rows only (see there)."""
        return self.searches_content or (self.reads_held and not held_index)

    def scan_limit(self, *, held_index: bool = False) -> int:
        """How many of the newest rows `scope` looks at; 0: all of them."""
        if not self.scan_capped(held_index=held_index):
            return 0
        return SEARCH_SCAN_CAP if self.searches_content else HELD_SCAN_CAP

    def scope(self, table: str, *, held_index: bool = False) -> Predicate:
        """Exactly the rows the list shows for this filter: the list query and every bulk write
        built from it use this one predicate, so a write never reaches further than the list.

        A content search (payload:/header:) only looks at the newest SEARCH_SCAN_CAP rows of
        `table`, for the list and the writes alike; so does `status:failed` unless `held_index`
        (the held-failures index exists: an index read, exact).
        """
        predicate = self.predicate()
        cap = self.scan_limit(held_index=held_index)
        if not cap:
            return predicate
        if self.searches_content:
            newest = (
                "job.id >= coalesce((SELECT min(newest.id) FROM (SELECT id FROM "
                f"{table} ORDER BY id DESC LIMIT {cap}) AS newest), 0)"
            )
        else:
            # The newest `cap` ids (one index probe; finished jobs leave gaps, so at most
            # `cap` rows): the row-count form above reads `cap` index entries first, 30-50 ms.
            newest = f"job.id > coalesce((SELECT max(newest.id) FROM {table} AS newest), 0) - {cap}"
        what = "searched" if self.searches_content else "scanned"
        return Predicate(
            f"({predicate.sql}) AND {newest}",
            predicate.args,
            f"{predicate.description} (newest {cap:,} jobs {what})",
        )


def parse_filter(text: str) -> JobFilter:
    """The filter line as SQL; ConsoleError naming the bad word on bad input."""
    terms: list[Predicate] = []
    content = held = False
    for word in text.split():
        negate = word.startswith("!")
        body = word[1:] if negate else word
        if not body:
            raise ConsoleError("`!` must precede a filter word, e.g. !ep:send_email")
        name, sep, value = body.partition(":")
        if not sep:
            term = Predicate(
                "job.entrypoint ILIKE $1", (f"%{_like_escape(body)}%",), f"ep contains {body!r}"
            )
        else:
            name = name.lower()
            if name not in _QUALIFIERS:
                raise ConsoleError(
                    f"unknown filter {name!r}: use {', '.join(q + ':' for q in _QUALIFIERS)}"
                )
            if not value:
                raise ConsoleError(f"{name}: needs a value, e.g. {name}:{_EXAMPLE[name]}")
            if name in ("ep", "status", "id", "prio"):
                _items(name, value, {"ep": "name", "status": "status"}.get(name, "number"))
            term = _TERMS[name](value)
            content = content or name in ("payload", "header")
            held = held or (
                name == "status" and not negate and "failed" in value.lower().split(",")
            )
        if negate:
            term = Predicate(f"NOT ({term.sql})", term.args, f"not {term.description}")
        terms.append(term)
    return JobFilter(
        text=text.strip(), terms=tuple(terms), searches_content=content, reads_held=held
    )


_EXAMPLE = {
    "ep": "send_email",
    "status": "failed",
    "id": "123",
    "prio": ">5",
    "age": ">10m",
    "payload": "user@example.com",
    "header": "trace",
}


def _like_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _items(name: str, value: str, what: str) -> list[str]:
    """The comma list of a word; a list with nothing in it, or an empty item, is an error (a
    word that silently matched everything once widened a bulk write to the whole queue)."""
    items = value.split(",")
    if not any(items):
        raise ConsoleError(f"{name}: needs at least one {what}, e.g. {name}:{_EXAMPLE[name]}")
    if not all(items):
        raise ConsoleError(f"{name}: empty item in {value!r} (a stray comma?)")
    return items


def _ep_term(value: str) -> Predicate:
    names = _items("ep", value, "name")
    exact = [n for n in names if "*" not in n]
    patterns = [_like_escape(n).replace("*", "%") for n in names if "*" in n]
    parts: list[str] = []
    args: list[object] = []
    if exact:
        args.append(exact)
        parts.append(f"job.entrypoint = ANY(${len(args)}::text[])")
    if patterns:
        args.append(patterns)
        parts.append(f"job.entrypoint LIKE ANY(${len(args)}::text[])")
    return Predicate(" OR ".join(parts), tuple(args), f"ep:{value}")


def _status_term(value: str) -> Predicate:
    names = [v.lower() for v in _items("status", value, "status")]
    parts: list[str] = []
    plain = []
    for name in names:
        if name in _PSEUDO_STATUS:
            parts.append(_PSEUDO_STATUS[name])
        elif name in STATUSES:
            plain.append(name)
        else:
            raise ConsoleError(
                f"unknown status {name!r}: the queue holds queued, picked, failed "
                "(also ready, deferred); finished jobs are only in the log"
            )
    # Literals (from STATUSES only, never the typed text): `status = 'failed'` is what PgQueuer's
    # partial indexes (queued, picked) and the held-failures index are declared with, so the
    # planner can use them; `status::text = ANY($1)` matched none of them.
    parts.extend(f"job.status = '{name}'" for name in STATUSES if name in plain)
    return Predicate(" OR ".join(parts), (), f"status:{value}")


def _compare(column: str, value: str, what: str, bits: int = 64) -> Predicate:
    # The column's own range (bigint id, integer priority): beyond it the server would fail.
    top = 2 ** (bits - 1) - 1

    def bounded(digits: str) -> int:
        # Length first: int() of thousands of digits is slow, then refused by Python itself.
        number = int(digits) if len(digits.lstrip("+-")) <= 20 else top + 1
        if not -top - 1 <= number <= top:
            raise ConsoleError(f"{what}: {digits[:24]} is out of range (at most {top:,})")
        return number

    if "," in value:
        parts = [v.strip() for v in _items(what, value, "number")]
        if not all(re.fullmatch(r"[+-]?\d+", part) for part in parts):
            raise ConsoleError(f"{what}: expects numbers, got {value!r}")
        numbers = [bounded(part) for part in parts]
        return Predicate(f"{column} = ANY($1::bigint[])", (numbers,), f"{what}:{value}")
    match = _COMPARE.match(value)
    if not match:
        raise ConsoleError(f"{what}: expects a number, optionally with > >= < <=, got {value!r}")
    operator = match.group(1) or "="
    number = bounded(match.group(2))
    return Predicate(f"{column} {operator} $1", (number,), f"{what}:{value}")


MAX_AGE_S = 100 * 365 * 86400  # PostgreSQL's timestamps would overflow long before a typo does


def _age_term(value: str) -> Predicate:
    match = re.match(r"^(>=|<=|>|<)?(\d+)([smhd]?)$", value)
    if not match:
        raise ConsoleError(f"age: expects e.g. >10m, <2h or >1d, got {value!r}")
    digits = match.group(2)
    unit = _AGE_UNITS[match.group(3) or "s"]
    seconds = int(digits) * unit if len(digits) <= 15 else MAX_AGE_S + 1
    if seconds > MAX_AGE_S:
        raise ConsoleError(f"age: {value[:24]!r} is more than 100 years")
    # Older than N = created before now() - N.
    operator = {">": "<", ">=": "<=", "<": ">", "<=": ">="}[match.group(1) or ">"]
    return Predicate(
        f"job.created {operator} now() - make_interval(secs => $1)",
        (float(seconds),),
        f"age:{value}",
    )


def _payload_term(value: str) -> Predicate:
    return Predicate(
        "position(convert_to($1, 'UTF8') in coalesce(job.payload, ''::bytea)) > 0",
        (value,),
        f"payload contains {value!r}",
    )


def _header_term(value: str) -> Predicate:
    return Predicate(
        "coalesce(job.headers::text, '') ILIKE $1",
        (f"%{_like_escape(value)}%",),
        f"headers contain {value!r}",
    )


_TERMS: dict[str, Any] = {
    "ep": _ep_term,
    "status": _status_term,
    "id": lambda v: _compare("job.id", v, "id"),
    "prio": lambda v: _compare("job.priority", v, "prio", bits=32),
    "age": _age_term,
    "payload": _payload_term,
    "header": _header_term,
}
