"""One exception hierarchy for the whole library."""

from __future__ import annotations


class SerBatchError(Exception):
    """Base class of every error ser_batch raises on purpose."""


class ConfigError(SerBatchError, ValueError):
    """A setting, parameter or location is invalid; raised before any work starts."""


class AudioError(SerBatchError):
    """One input cannot be turned into features; recorded per file, never fatal to a shard."""


class PoisonFileError(AudioError):
    """A file ended the worker process working on it: a crash, a kill for memory, or the per-file time limit.

    Not raised: it is the error recorded for such a file, which is not tried again in the same run.
    """


class LabelError(AudioError):
    """A file name has a known corpus's shape but a code that corpus does not define."""


class SchemaError(SerBatchError):
    """Data does not have the shape, columns, feature set or fingerprint it must have.

    Raised for tables, model directories and arrays alike (a feature matrix of the wrong
    width, probabilities that do not match their windows, labels outside the classes).
    """


class RunError(SerBatchError):
    """A run did its work but failed as a whole: more of its inputs were bad than ``max_error_ratio`` allows."""


class StorageError(SerBatchError):
    """SOURCE or DEST cannot be listed, read or written (missing, denied, unreachable)."""


class LeaseError(StorageError):
    """DEST is leased by another run (named in the message), or this run lost its lease on DEST."""
