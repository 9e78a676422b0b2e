"""A stand-in for the ``isphere_exceptions`` package, for tests only.

It mirrors the documented class names and bases (and a constructor that takes
``code``); it is put on the import path only by the tests that need it.
"""


class ISphereException(Exception):
    EXCEPTION_PREFIX = "ISP"
    DEFAULT_MESSAGE = "error"

    def __init__(self, *args, code=500, internal_code=None, **kwargs):
        self.code = code
        self.internal_code = internal_code
        super().__init__(*args or (self.DEFAULT_MESSAGE,))

    def __str__(self):
        # The real package formats its own messages; sessionlib's must survive.
        return f"{self.EXCEPTION_PREFIX}-{self.code}: {super().__str__()}"


class CommonException(ISphereException):
    pass


class ConfigurationInvalidException(ISphereException):
    pass


class ConnectionException(ISphereException):
    pass


class TimeoutException(ISphereException):
    pass


class OperationFailureException(ISphereException):
    pass


class ParseErrorException(ISphereException):
    pass


class ErrorReturnToQueue(ISphereException):
    pass


class ErrorNoReturnToQueue(ISphereException):
    pass
