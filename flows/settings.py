"""Settings flows take from the environment, never from Prefect parameters (secrets stay out of the API)."""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr

from ser_batch.errors import ConfigError

STORAGE_OPTIONS_ENV = "SER_BATCH_STORAGE_OPTIONS"
TIMEZONE_ENV = "SER_BATCH_TIMEZONE"


def storage_options_from_env() -> dict[str, Any] | None:
    """Fsspec storage options from ``$SER_BATCH_STORAGE_OPTIONS`` (a JSON object), or None.

    Without it, s3fs reads the standard AWS environment and profiles itself.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    return None if not raw else parse_storage_options(raw)


def sealed_storage_options() -> SecretStr | None:
    """The environment's storage options sealed for a task argument: Prefect shows a SecretStr as ``**********``.

    Passed to Dask workers with each task, so workers of an external cluster use the same
    endpoint and keys as the flow, and nothing readable reaches the Prefect API.
    """
    raw = os.environ.get(STORAGE_OPTIONS_ENV)
    return None if not raw else SecretStr(json.dumps(parse_storage_options(raw)))


def unseal_storage_options(sealed: SecretStr | None) -> dict[str, Any] | None:
    """The dict inside ``sealed_storage_options()``."""
    return None if sealed is None else parse_storage_options(sealed.get_secret_value())


def parse_storage_options(raw: str) -> dict[str, Any]:
    """Parse a JSON object of storage options; the message never echoes the value (it may hold keys)."""
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--storage-options is not valid JSON ({error.msg} at position {error.pos})") from None
    if not isinstance(options, dict):
        raise ConfigError(f"--storage-options must be a JSON object, got {type(options).__name__}")
    return options


def timezone_name() -> str:
    """The IANA time zone of schedules and run dates: ``$SER_BATCH_TIMEZONE``, default ``UTC``.

    Raises:
        ConfigError: if the zone is unknown.
    """
    name = os.environ.get(TIMEZONE_ENV) or "UTC"
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{TIMEZONE_ENV} {name!r} is not a known IANA time zone (e.g. UTC, Europe/Berlin)") from None
    return name


def today() -> str:
    """Today's date as ``YYYY-MM-DD`` in ``timezone_name()``: a scoring run's default run_date."""
    return datetime.now(ZoneInfo(timezone_name())).date().isoformat()
