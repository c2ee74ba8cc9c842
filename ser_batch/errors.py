"""One exception hierarchy for the whole library."""

from __future__ import annotations


class SerBatchError(Exception):
    """Base class of every error ser_batch raises on purpose."""


class ConfigError(SerBatchError, ValueError):
    """A setting, parameter or location is invalid; raised before any work starts."""


class AudioError(SerBatchError):
    """One input cannot be turned into features; recorded per file, never fatal to a shard."""


class SchemaError(SerBatchError):
    """A table does not have the columns, feature set or fingerprint it must have."""


class StorageError(SerBatchError):
    """SOURCE or DEST cannot be listed, read or written (missing, denied, unreachable)."""
