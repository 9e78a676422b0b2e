"""Stand-in: the MongoDB errors of ``isphere_exceptions`` (code 522, prefix MNG)."""

from isphere_exceptions import (
    CommonException,
    ConfigurationInvalidException,
    ConnectionException,
    ISphereException,
    OperationFailureException,
    ParseErrorException,
    TimeoutException,
)


class MongoErrorInterface(ISphereException):
    EXCEPTION_PREFIX = "MNG"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, code=522, **kwargs)


class MongoError(MongoErrorInterface, CommonException):
    pass


class MongoConfigurationInvalid(MongoErrorInterface, ConfigurationInvalidException):
    pass


class MongoConnection(MongoErrorInterface, ConnectionException):
    pass


class MongoTimeout(MongoErrorInterface, TimeoutException):
    pass


class MongoOperationFailure(MongoErrorInterface, OperationFailureException):
    pass


class MongoParseError(MongoErrorInterface, ParseErrorException):
    pass
