"""Stand-in: the session errors of ``isphere_exceptions``."""

from isphere_exceptions import ErrorReturnToQueue, ISphereException


class SessionErrorInterface(ISphereException):
    EXCEPTION_PREFIX = "SES"


class SessionEmpty(SessionErrorInterface, ErrorReturnToQueue):
    DEFAULT_MESSAGE = "no session"
