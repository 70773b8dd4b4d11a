"""libpq's connection-string parsing (`PQconninfoParse`) for the plain strings, without psycopg.

Importing psycopg costs ~0.1-0.2 s of CPU, and every launch parses its DSN (labels, the
passwords to scrub) before connecting, with asyncpg as often as with psycopg. `parse` follows
libpq's own parser (fe-connect.c: `conninfo_parse`, `conninfo_uri_parse_options`,
`conninfo_uri_parse_params`, `conninfo_uri_decode`) for the strings it is sure of, and returns
None for anything else: a syntax error, a keyword outside `KEYWORDS`, the legacy spellings
libpq rewrites (`requiressl`, `ssl=true`), a NUL. The caller then asks psycopg, whose result
(or error message) is the reference; tests/test_conninfo.py compares the two.
"""

from __future__ import annotations

# Keywords every libpq since 10 knows and stores as given (no rewriting), in the order of
# libpq's option list, which is the order of its answer (and of psycopg's dict): a string
# with any other keyword goes to libpq, which knows its own version's list.
KEYWORDS = (
    "service",
    "user",
    "password",
    "passfile",
    "connect_timeout",
    "dbname",
    "host",
    "hostaddr",
    "port",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "sslmode",
    "sslcert",
    "sslkey",
    "sslrootcert",
    "sslcrl",
    "krbsrvname",
    "target_session_attrs",
)
_KNOWN = frozenset(KEYWORDS)
URI_PREFIXES = ("postgresql://", "postgres://")
# C's isspace() in the C locale.
_SPACE = frozenset(" \t\n\v\f\r")
_HEX = frozenset("0123456789abcdefABCDEF")


def parse(dsn: str) -> dict[str, str] | None:
    """What `psycopg.conninfo.conninfo_to_dict(dsn)` returns, or None: ask psycopg."""
    if "\x00" in dsn:
        return None
    found = _parse_uri(dsn) if dsn.startswith(URI_PREFIXES) else _parse_pairs(dsn)
    if found is None:
        return None
    return {keyword: found[keyword] for keyword in KEYWORDS if keyword in found}


def _store(into: dict[str, str], keyword: str, value: str) -> bool:
    if keyword not in _KNOWN:
        return False
    into[keyword] = value
    return True


def _parse_pairs(dsn: str) -> dict[str, str] | None:
    """`keyword = value` pairs; a value is 'quoted' or runs to the next space; \\ escapes."""
    found: dict[str, str] = {}
    i, end = 0, len(dsn)
    while i < end:
        if dsn[i] in _SPACE:
            i += 1
            continue
        start = i
        while i < end and dsn[i] != "=" and dsn[i] not in _SPACE:
            i += 1
        keyword = dsn[start:i]
        while i < end and dsn[i] in _SPACE:
            i += 1
        if i >= end or dsn[i] != "=":
            return None  # libpq: missing "=" after the keyword
        i += 1
        while i < end and dsn[i] in _SPACE:
            i += 1
        value: list[str] = []
        if i < end and dsn[i] == "'":
            i += 1
            while True:
                if i >= end:
                    return None  # libpq: unterminated quoted string
                char = dsn[i]
                if char == "\\":
                    i += 1
                    if i < end:
                        value.append(dsn[i])
                        i += 1
                    continue
                i += 1
                if char == "'":
                    break
                value.append(char)
        else:
            while i < end:
                char = dsn[i]
                if char in _SPACE:
                    i += 1
                    break
                if char == "\\":
                    i += 1
                    if i < end:
                        value.append(dsn[i])
                        i += 1
                    continue
                value.append(char)
                i += 1
        if not _store(found, keyword, "".join(value)):
            return None
    return found


def _decode(text: str) -> str | None:
    """%XX decoded as libpq does (on bytes: a multi-byte character may be written %XX%XX);
    None for a bad or %00 escape."""
    if "%" not in text:
        return text
    raw = bytearray()
    i, end = 0, len(text)
    while i < end:
        char = text[i]
        if char != "%":
            raw += char.encode()
            i += 1
            continue
        digits = text[i + 1 : i + 3]
        if len(digits) != 2 or not set(digits) <= _HEX or digits == "00":
            return None
        raw.append(int(digits, 16))
        i += 3
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None  # psycopg would decode libpq's bytes its own way: ask it


def _parse_uri(dsn: str) -> dict[str, str] | None:
    """postgresql://[user[:password]@][host][:port][/dbname][?keyword=value&...], one host."""
    if not _SPACE.isdisjoint(dsn):
        return None  # libpq 17 and later trim the parts' spaces or refuse them; earlier keep them
    found: dict[str, str] = {}
    rest = dsn[len("postgresql://") if dsn.startswith("postgresql://") else len("postgres://") :]
    # libpq looks for the `@` up to the first `/` (not `?`), and ends the userinfo at the
    # first `@`.
    cut = len(rest)
    for index, char in enumerate(rest):
        if char in "@/":
            cut = index
            break
    if cut < len(rest) and rest[cut] == "@":
        userinfo, rest = rest[:cut], rest[cut + 1 :]
        user, colon, password = userinfo.partition(":")
        if user and not _store_decoded(found, "user", user):
            return None
        if colon and password and not _store_decoded(found, "password", password):
            return None
    if rest.startswith("["):
        return None  # an IPv6 address: libpq's rules for the brackets
    index = 0
    while index < len(rest) and rest[index] not in ":/?,":
        index += 1
    host, stop = rest[:index], rest[index : index + 1]
    rest = rest[index + 1 :]
    port = ""
    if stop == ":":
        index = 0
        while index < len(rest) and rest[index] not in "/?,":
            index += 1
        port, stop = rest[:index], rest[index : index + 1]
        rest = rest[index + 1 :]
    if stop == ",":
        return None  # several hosts
    if host and not _store_decoded(found, "host", host):
        return None
    if port and not _store_decoded(found, "port", port):
        return None
    if stop == "/":
        dbname, question, rest = rest.partition("?")
        if dbname and not _store_decoded(found, "dbname", dbname):
            return None
        stop = question
    if stop == "?":
        while rest:
            parameter, _, rest = rest.partition("&")
            if parameter.count("=") != 1:
                return None  # libpq: a missing or an extra "="
            keyword, _, value = parameter.partition("=")
            decoded_keyword, decoded_value = _decode(keyword), _decode(value)
            if decoded_keyword is None or decoded_value is None:
                return None
            if decoded_keyword == "ssl" or not _store(found, decoded_keyword, decoded_value):
                return None
    return found


def _store_decoded(into: dict[str, str], keyword: str, text: str) -> bool:
    value = _decode(text)
    return value is not None and _store(into, keyword, value)
