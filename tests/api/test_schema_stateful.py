"""The API driven by schemathesis in stateful mode, in process over WSGI: sequences of calls
linked by what earlier answers returned (links inferred from the schema: a list's
``enterprise_id`` feeds the detail, history and action operations), every answer checked for
no 5xx and conformance to the schema."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from schemathesis import GenerationMode

from tests.api.test_schema import api_schema, auditor_token  # noqa: F401 (fixtures)

SCENARIOS = 25
STEPS_PER_SCENARIO = 6


@pytest.mark.django_db
def test_linked_sequences_of_calls_conform_to_the_schema(api_schema, auditor_token):  # noqa: F811
    # given
    @api_schema.auth()
    class TokenAuth:
        """The auditor's token on every call, as schemathesis' own authentication (so its
        check that a broken or missing token is refused knows which one is real)."""

        def get(self, case: Any, context: Any) -> str:
            return auditor_token

        def set(self, case: Any, data: str, context: Any) -> None:
            case.headers = {**(case.headers or {}), "Authorization": f"Token {data}"}

    # The API refuses NUL in any string with a 400 by design (PostgreSQL cannot store it);
    # the schema cannot say so in a way generators honour, so none is generated here.
    # Positive data only: the sequences are what this test is for, and which negative cases a
    # sequence meets depends on the data earlier calls returned (refusals of schema-violating
    # input are the operation-by-operation test's: test_schema.py).
    api_schema.config.generation.update(allow_x00=False, modes=[GenerationMode.POSITIVE])
    machine = api_schema.as_state_machine()
    calls: list[tuple[str, int]] = []

    class Stateful(machine):  # type: ignore[misc, valid-type]
        def after_call(self, response: Any, case: Any) -> None:
            calls.append((case.operation.label, response.status_code))

    # when / then: the machine's checks (no server error, status code, content type and body
    # conform to the schema) run on every answer
    Stateful.run(
        settings=settings(
            max_examples=SCENARIOS,
            stateful_step_count=STEPS_PER_SCENARIO,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
    )
    # then: sequences ran, and some call used a value an earlier answer returned
    assert len(calls) >= SCENARIOS
    assert [status for _, status in calls if status >= 500] == []
    assert any("{" in label and status == 200 for label, status in calls)
