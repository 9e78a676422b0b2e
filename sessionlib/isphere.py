"""The seed's exception classes, for worker code that still catches them.

The seed's ``timeout`` decorator raised the classes of the ``isphere_exceptions``
package, and existing workers catch them (``except MongoConnection:``). When
that package can be imported, every error sessionlib raises in one of the
seed's situations is *also* an instance of the seed's class, so those
``except`` clauses catch what they caught before:

=========================================  ================================================
sessionlib raises                          also an instance of (``isphere_exceptions.…``)
=========================================  ================================================
``ConfigurationError``                     ``mongo.MongoConfigurationInvalid``
``ServerUnavailableError`` at connect()    ``mongo.MongoConnection``
``OperationTimeoutError``, and             ``mongo.MongoTimeout``
``ServerUnavailableError`` of an operation
any other ``DatabaseError``                ``mongo.MongoOperationFailure``
``NoSessionAvailableError``                ``session.SessionEmpty``
=========================================  ================================================

sessionlib's own classes, messages, ``__cause__`` and password redaction stay
as they are: the error is an instance of a small class deriving from both.
When the package is absent nothing changes, and it is looked for only on the
first error raised, without being imported.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
from typing import Any, TypeVar

from .exceptions import (
    ConfigurationError,
    DatabaseError,
    NoSessionAvailableError,
    OperationTimeoutError,
    ServerUnavailableError,
    SessionPoolError,
)

__all__ = ["PACKAGE", "adapt", "seed_class_name"]

PACKAGE = "isphere_exceptions"

E = TypeVar("E", bound=SessionPoolError)

_present: bool | None = None
_dual_classes: dict[tuple[type[BaseException], type[BaseException]], type[BaseException]] = {}


def seed_class_name(error: SessionPoolError, *, connecting: bool = False) -> str | None:
    """Return ``"module.Class"`` of the seed's class for *error*, or ``None`` if it has none."""
    if isinstance(error, ConfigurationError):
        return "mongo.MongoConfigurationInvalid"
    if isinstance(error, ServerUnavailableError):
        return "mongo.MongoConnection" if connecting else "mongo.MongoTimeout"
    if isinstance(error, OperationTimeoutError):
        return "mongo.MongoTimeout"
    if isinstance(error, DatabaseError):
        return "mongo.MongoOperationFailure"
    if isinstance(error, NoSessionAvailableError):
        return "session.SessionEmpty"
    return None


def _package_present() -> bool:
    global _present
    if _present is None:
        try:
            _present = importlib.util.find_spec(PACKAGE) is not None
        except (ImportError, ValueError):
            _present = False
    return _present


def _seed_class(name: str) -> type[BaseException] | None:
    module_name, _, class_name = name.rpartition(".")
    try:
        module = importlib.import_module(f"{PACKAGE}.{module_name}")
    except ImportError:
        return None
    found = getattr(module, class_name, None)
    return found if isinstance(found, type) and issubclass(found, BaseException) else None


def _dual(ours: type[BaseException], seed: type[BaseException]) -> type[BaseException]:
    key = (ours, seed)
    if key not in _dual_classes:
        _dual_classes[key] = type(
            ours.__name__,
            (ours, seed),
            {
                "__module__": ours.__module__,
                "__qualname__": ours.__qualname__,
                "__doc__": ours.__doc__,
                # sessionlib's message, whatever the seed's class prints.
                "__str__": BaseException.__str__,
                "__repr__": BaseException.__repr__,
            },
        )
    return _dual_classes[key]


def adapt(error: E, *, connecting: bool = False) -> E:
    """Return *error*, made an instance of the seed's class too when the package is present.

    *connecting* marks errors of ``connect()``, which the seed reported as
    ``MongoConnection``.
    """
    if not _package_present():
        return error
    name = seed_class_name(error, connecting=connecting)
    seed = _seed_class(name) if name else None
    if seed is None or isinstance(error, seed):
        return error
    args = error.args
    dual: Any = _dual(type(error), seed)
    try:
        error.__class__ = dual
    except TypeError:  # a layout the two classes cannot share: keep sessionlib's error
        return error
    # Let the seed's class set its own attributes (code, prefix...). Its
    # signature is not ours to know, and sessionlib's error is complete without.
    with contextlib.suppress(Exception):
        seed.__init__(error, *args)
    error.args = args
    return error
