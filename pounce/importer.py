"""Resolve ``"package.module:attr.sub"`` strings to objects (the APP argument, class paths)."""

from __future__ import annotations

import importlib
from typing import Any


class ImportFromStringError(Exception):
    """The import string is malformed, or names a module/attribute that does not exist."""


def import_from_string(import_str: Any) -> Any:
    """Return the object named by ``import_str``; non-strings are returned unchanged.

    Only a missing *top-level target* becomes an ImportFromStringError. An ImportError
    raised while executing the target module (a missing dependency, a circular import)
    is re-raised untouched so the user sees the real cause instead of a misleading
    "Could not import module".
    """
    if not isinstance(import_str, str):
        return import_str

    module_str, _, attrs_str = import_str.partition(":")
    if not module_str or not attrs_str:
        raise ImportFromStringError(f'Import string "{import_str}" must be in format "<module>:<attribute>".')

    try:
        module = importlib.import_module(module_str)
    except ModuleNotFoundError as exc:
        if exc.name != module_str:
            # Something the module itself imports is missing: that is the user's real error.
            raise exc from None
        raise ImportFromStringError(f'Could not import module "{module_str}".')

    instance: Any = module
    try:
        for attr_str in attrs_str.split("."):
            instance = getattr(instance, attr_str)
    except AttributeError:
        raise ImportFromStringError(f'Attribute "{attrs_str}" not found in module "{module_str}".')

    return instance
