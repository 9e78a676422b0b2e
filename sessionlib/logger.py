"""The library's logger, and the one function that makes URLs safe to log.

sessionlib logs through ``logging.getLogger("sessionlib")`` and its children;
configure it like any other logger. Connection strings pass through
:func:`redact_url` before they reach a log line or an error message.
"""

from __future__ import annotations

import logging
import re

__all__ = ["logger", "redact_url"]

logger = logging.getLogger("sessionlib")

# scheme://user:password@hosts  ->  scheme://user:***@hosts
_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/]*):[^@/]*@")
# ...?password=...&  (rare, but pymongo accepts some credentials as options)
_QUERY_SECRET = re.compile(r"(?i)(?P<key>[?&](?:password|authmechanismproperties)=)[^&]*")


def redact_url(url: str | None) -> str:
    """Return *url* with any password replaced by ``***``, safe to log.

    ``None`` gives ``"<none>"`` so callers need no special case.
    """
    if url is None:
        return "<none>"
    redacted = _USERINFO.sub(r"\g<scheme>\g<user>:***@", url)
    return _QUERY_SECRET.sub(r"\g<key>***", redacted)
