"""Fixtures for the reliability suite: the router in-process per backend, and the numbers it records.

Every figure a test measures (request counts, rates, p95 latencies) is written to artifacts/reliability/
as JSON and printed, so the README's table can be reproduced; no test asserts on wall-clock time.
"""

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import REPO_ROOT, make_client

ARTIFACTS = REPO_ROOT / "artifacts" / "reliability"


def record(name: str, figures: dict[str, Any]) -> Path:
    """Write one test's figures to artifacts/reliability/<name>.json and print them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.json"
    path.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    print(f"\n{name}: {json.dumps(figures, sort_keys=True)}")
    return path


def backend(database_url: str | None = None) -> str:
    """sqlite or postgresql: the backend of this URL, or of the in-process app's settings."""
    from sqlalchemy.engine import make_url

    from shared.settings import get_settings

    return make_url(database_url or get_settings().database_url).get_backend_name()


def p95(samples: list[float]) -> float:
    """The 95th percentile (nearest rank) of the samples, in the samples' unit."""
    ordered = sorted(samples)
    return ordered[max(0, -(-95 * len(ordered) // 100) - 1)] if ordered else 0.0


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def router_client(request: pytest.FixtureRequest) -> Iterator[TestClient]:
    """The local router (every function, the default model) in-process, once per module and backend."""
    from shared.settings import get_settings

    database_url = str(request.getfixturevalue(f"{request.param}_url"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SLM_DATABASE_URL", database_url)
        get_settings.cache_clear()
        from infra.router.app import app

        with make_client(app, database_url) as client:
            yield client
        get_settings.cache_clear()
