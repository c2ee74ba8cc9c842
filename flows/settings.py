"""Settings flows take from the environment, never from Prefect parameters (secrets stay out of the API)."""

from __future__ import annotations

import json
import os
from typing import Any

from ser_batch.errors import ConfigError

STORAGE_OPTIONS_ENV = "SER_BATCH_STORAGE_OPTIONS"


def storage_options_from_env() -> dict[str, Any] | None:
    """fsspec storage options from ``$SER_BATCH_STORAGE_OPTIONS`` (a JSON object), or None.

    Without it, s3fs reads the standard AWS environment and profiles itself.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    return None if not raw else parse_storage_options(raw)


def parse_storage_options(raw: str) -> dict[str, Any]:
    """Parse a JSON object of storage options; the message never echoes the value (it may hold keys)."""
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--storage-options is not valid JSON ({error.msg} at position {error.pos})") from None
    if not isinstance(options, dict):
        raise ConfigError(f"--storage-options must be a JSON object, got {type(options).__name__}")
    return options
