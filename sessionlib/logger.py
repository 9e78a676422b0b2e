"""The library's logger, and the functions that keep passwords out of logs.

sessionlib logs through ``logging.getLogger("sessionlib")`` and its children;
configure it like any other logger. Connection strings pass through
:func:`redact_url` before they reach a log line or an error message.

Redaction does not trust a URL parser: a password with an unescaped ``/`` or
``@`` (``mongodb://user:se/cret@host/``) is a malformed URL, which parsers
read in surprising ways. Everything between ``scheme://`` and the *last*
``@`` is treated as credentials; when in doubt, more is hidden, never less.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote

__all__ = ["logger", "redact_url", "url_password"]

logger = logging.getLogger("sessionlib")

# ...?password=...&  (rare, but pymongo accepts some credentials as options)
_QUERY_SECRET = re.compile(
    r"(?i)(?P<key>[?&;](?:password|authmechanismproperties|tlscertificatekeyfilepassword)=)[^&;]*"
)
_USER = re.compile(r"[^/?#\[\]\s]*")


def _credentials(url: str) -> tuple[int, int] | None:
    """The span of ``user[:password]`` in *url*, up to the last ``@``, or ``None``."""
    scheme = url.find("://")
    start = scheme + 3 if scheme >= 0 else 0
    at = url.rfind("@")
    return (start, at) if at >= start else None


def redact_url(url: str | None) -> str:
    """Return *url* with any password replaced by ``***``, safe to log.

    ``None`` gives ``"<none>"`` so callers need no special case.
    """
    if url is None:
        return "<none>"
    # Secrets in the options first: a password there may hold an '@' too.
    url = _QUERY_SECRET.sub(r"\g<key>***", url)
    span = _credentials(url)
    if span is not None:
        start, at = span
        userinfo = url[start:at]
        user, colon, _ = userinfo.partition(":")
        if colon or not _USER.fullmatch(userinfo):
            shown = f"{user}:***" if colon and _USER.fullmatch(user) else "***"
            url = url[:start] + shown + url[at:]
    return url


def url_password(url: str | None) -> list[str]:
    """Return the password of *url* as written and unescaped, for log scrubbing (or ``[]``)."""
    if not url:
        return []
    span = _credentials(url)
    if span is None:
        return []
    _, colon, password = url[span[0] : span[1]].partition(":")
    if not colon or not password:
        return []
    return sorted({password, unquote(password)}, key=len, reverse=True)
