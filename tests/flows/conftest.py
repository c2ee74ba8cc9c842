from __future__ import annotations

from collections.abc import Iterator

import pytest

from flows.api import prefect_api


@pytest.fixture(scope="session")
def prefect() -> Iterator[str | None]:
    # The same temporary API the CLI starts, shared with Dask worker processes.
    with prefect_api() as url:
        yield url
