"""Schemathesis against the server's own OpenAPI description: every endpoint, with generated paths,
queries and bodies, answered without a 5xx (a bad request is a 4xx naming what was wrong).

The requests carry a valid API key of a project holding a run, so they reach the handlers, not only
the key check."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings


@pytest.mark.slow
def test_no_endpoint_answers_a_server_error(local_server):
    schema = schemathesis.openapi.from_url(local_server.url + "/openapi.json")
    key = local_server.new_project()[1]
    headers = {"Authorization": f"Bearer {key}"}
    server_errors, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=operation.as_strategy())
        def call(case):
            response = case.call(headers=headers, timeout=30)
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}: "
                                     f"{response.status_code} {response.text[:200]}")

        call()
    assert operations > 30
    assert not server_errors, "\n".join(server_errors[:20])
