"""Schemathesis fuzzes the REST API through its own OpenAPI document, served live.

A real daphne (`python -m quantsaas.web`) serves the test database on a free port; the
schema is read from its `/api/v1/schema/` and every operation gets generated requests,
authenticated with a real API key of an organization that has market data, a plan
generous enough not to rate-limit the run, and jobs to read. Each answer must pass
`not_a_server_error` (no 5xx) and `response_schema_conformance` (status, content type and
body as documented). The seed and the example count are fixed so a run is repeatable and
takes about a minute (docs/operations.md, "Fuzzing"); FUZZ_EXAMPLES raises the count for
a deeper run by hand.
"""

from __future__ import annotations

import os
from collections import Counter

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from accounts.models import ApiKeyScope
from accounts.services.api_keys import api_key_create
from analytics.models import Backtest
from marketdata.sim.history import sim_history_load
from quantsaas.timeutil import now_ms
from tests.e2e.stream_servers import WebProcess, running
from tests.factories import plan_override_with

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SEED = 20_261_205
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))  # per operation
CHECKS = [not_a_server_error, response_schema_conformance]
MODES = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]


def _cases(operation, known: dict[str, str]) -> st.SearchStrategy:
    """Valid and invalid requests; half of them aimed at objects that exist (a market with
    data, a job), since random path parameters mostly meet a 404."""
    strategies = [operation.as_strategy(mode) for mode in MODES]
    names = {p.name for p in operation.path_parameters}
    if names and names <= set(known):
        fixed = {name: known[name] for name in names}
        strategies += [operation.as_strategy(mode, path_parameters=fixed) for mode in MODES]
    return st.one_of(strategies)


@pytest.fixture
def fuzz_key(alice, acme) -> tuple[str, dict[str, str]]:
    plan_override_with(
        organization=acme,
        requests_per_minute=1_000_000,
        stream_delay_seconds=0,
        history_days=None,
        backtests_per_day=1_000_000,
        api_keys=1_000,
    )
    end = now_ms()
    sim_history_load(minutes=30, seed=11, end_ms=end - end % 60_000)
    job = Backtest.objects.create(organization=acme, strategy="momentum", params={})  # queued
    # Every scope, so no operation is refused for the key's scope rather than its input.
    created = api_key_create(
        organization=acme, created_by=alice, name="fuzz", scopes=list(ApiKeyScope.values)
    )
    known = {"exchange": "sim", "symbol": "BTC-USD", "id": str(job.pk)}
    return created.raw_key, known


def test_the_api_answers_every_generated_request_as_documented(fuzz_key, tmp_path):
    key, known = fuzz_key
    with running(WebProcess(logs=tmp_path)) as (web,):
        schema = schemathesis.openapi.from_url(f"{web.http}/api/v1/schema/?format=json", timeout=30)
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {key}"
        failures: list[str] = []
        statuses: Counter[int] = Counter()
        operations = 0
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1

            @hypothesis.seed(SEED)
            @hypothesis.settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
                print_blob=False,
            )
            @hypothesis.given(case=_cases(operation, known))
            def fuzz(case) -> None:
                response = case.call_and_validate(base_url=web.http, session=session, checks=CHECKS)
                statuses[response.status_code] += 1

            try:
                fuzz()
            except (Exception, BaseExceptionGroup) as exc:  # every operation is reported
                failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
        assert operations >= 15, "the schema lost its operations"
        assert not failures, "\n\n".join(failures) + "\n\n" + web.tail(60)
    print(f"fuzz: {operations} operations, answers by status: {dict(sorted(statuses.items()))}")
    # The run reached real data and was refused for bad input, not only one or the other.
    assert statuses[200] and statuses[400] and statuses[404], statuses
