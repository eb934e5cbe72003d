"""Precise exceptions of the library.

Each is a subclass of a built-in exception so callers that only know Python still catch
it; the CLI turns every `BehaviorError` into one clear message and exit code 2.
"""


class BehaviorError(Exception):
    """Base of every error the library raises on purpose (bad input, bad usage)."""


class InputError(BehaviorError, ValueError):
    """An input file or table cannot be used at all (unreadable, missing a required column)."""


class SchemaError(InputError):
    """A table lacks a required column or has one of the wrong type."""


class AsOfError(BehaviorError, ValueError):
    """An as-of date leaves no usable data (before every event, or after nothing)."""


class NotFittedError(BehaviorError, AttributeError):
    """An estimator was used before `fit`."""
