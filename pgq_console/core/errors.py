"""One-line, password-free messages for everything that can go wrong while connecting."""

from __future__ import annotations

import re
from urllib.parse import quote


class ConsoleError(Exception):
    """An error whose message is fit to show the operator as it is (one line, no secrets)."""


class SchemaNotReady(ConsoleError):
    """The server answers, but PgQueuer's schema is missing or older than pgqueuer needs: the
    installation is reachable and in error, not down (the fleet says so)."""


# A password by its place, for DSNs too broken to parse (so their password is not known):
# the userinfo of a URI (`scheme://user:PASSWORD@`, up to the last `@` before the host).
# Only where a scheme can start, and a scheme of at most 32 characters: linear in the text.
_URI_PASSWORD = re.compile(
    r"(?i)(?<![a-z0-9+.-])([a-z][a-z0-9+.-]{0,32}://[^:/?#@\s\"']*):[^\s\"']*@"
)
# A secret by its key, in every form it reaches a message or a traceback in: key=value
# (`password=x`, `PGPASSWORD=x`, `?api_key=x&...`), `key: value` (`password: x`, a header
# line `Authorization: Bearer x`), a Python dict or JSON (`'password': 'x'`, `"token": "x"`,
# `\"secret\": \"x\"` inside a JSON string). The key is any word holding one of these (so
# `db_password`, `client_secret`, `x-api-key`); the value is a quoted string or a bare word.
SECRET_KEYWORDS = (
    "password",
    "passwd",
    "passphrase",
    "pwd",
    "secret",
    "token",
    "api[_-]?key",
    "access[_-]?key",
    "private[_-]?key",
    "credentials?",
    "authorization",
    "cookie",
)
# The fingerprint's placeholders (core/fingerprint.py) and the bundle's <redacted> hide
# nothing: kept.
_PLACEHOLDER = r"<(?:str|n|hex|uuid|ts|email|query|redacted)>"
_KEYWORD_SECRET = re.compile(
    # Only where a run of key characters starts, and a key of at most 64 characters around
    # the keyword: linear in the text (unbounded, `a-a-a-...` took 6 s for 10,000 characters).
    r"(?i)(?<![A-Za-z0-9_.-])"
    rf"(?P<key>[A-Za-z0-9_.-]{{0,64}}?(?:{'|'.join(SECRET_KEYWORDS)})[A-Za-z0-9_-]{{0,64}}"
    r"(?:\\?[\"'])?[ \t]*[:=][ \t]*)"
    rf"(?!{_PLACEHOLDER})"
    r"(?P<value>\\\"[^\"\\\n]*(?:\\\")?"  # \"x\" (JSON inside a string)
    r"|\"(?:[^\"\\\n]|\\.)*\"?"  # "x"
    r"|'(?:[^'\\\n]|\\.)*'?"  # 'x'
    r"|(?:(?:bearer|basic|digest|token)[ \t]+)?[^\s\"',;&}\])\\]+)"  # a bare word
)


def _keep_quotes(match: re.Match[str]) -> str:
    value = match.group("value")
    for mark in ('\\"', '"', "'"):
        if value.startswith(mark):
            closing = mark if len(value) > len(mark) and value.endswith(mark) else ""
            return f"{match.group('key')}{mark}***{closing}"
    return f"{match.group('key')}***"


def scrub_dsn_passwords(text: str) -> str:
    """Every password-looking part of `text` replaced by ***: a connection string's password,
    and any value after a secret-sounding key (`SECRET_KEYWORDS`)."""
    text = _URI_PASSWORD.sub(r"\1:***@", text)
    return _KEYWORD_SECRET.sub(_keep_quotes, text)


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret that leaked into a driver message, known or by its place."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, "***")
            text = text.replace(quote(secret, safe=""), "***")
    return scrub_dsn_passwords(text)
