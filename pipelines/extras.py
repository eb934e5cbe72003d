"""Optional dependencies: a command that needs one of the package's extras names the extra to
install instead of failing on an import deep inside it."""

from __future__ import annotations

import importlib

from behavior.errors import BehaviorError


class MissingExtraError(BehaviorError):
    """A module of one of the package's extras (pyproject.toml) is not installed."""


def require_extra(module: str, extra: str, purpose: str) -> None:
    """Return if `module` imports; else raise MissingExtraError naming `extra` and how to install it."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise MissingExtraError(f"{purpose} needs {module}, from the package's {extra!r} extra: "
                                f"pip install 'behavior[{extra}]' (from a checkout: pip install '.[{extra}]')") from None
