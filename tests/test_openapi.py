"""The OpenAPI document is valid and documents the keys endpoints and how to authenticate."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.validation import validate_schema
from rest_framework.test import APIClient

SCHEMA = "/api/v1/schema/"


@pytest.fixture(scope="module")
def schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


def test_the_schema_is_a_valid_openapi_3_document(schema):
    validate_schema(schema)  # raises on any violation of the OpenAPI 3 JSON schema
    assert schema["openapi"].startswith("3.")


def test_the_schema_is_served_without_signing_in(db):
    response = APIClient().get(SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    assert response.json()["info"]["title"] == "QuantSaaS API"


def test_the_keys_endpoints_are_documented(schema):
    keys, key = schema["paths"]["/api/v1/keys"], schema["paths"]["/api/v1/keys/{api_key_id}"]

    assert {"get", "post"} <= set(keys)
    assert "delete" in key
    assert "201" in keys["post"]["responses"]
    created = schema["components"]["schemas"]["ApiKeyCreated"]["properties"]
    assert "key" in created
    listed = schema["components"]["schemas"]["ApiKey"]["properties"]
    assert "key" not in listed and "key_hash" not in listed
    assert listed["created_at"]["type"] == "integer"
    for status in ("401", "403", "404"):
        error = key["delete"]["responses"][status]["content"]["application/json"]["schema"]
        assert error["$ref"].endswith("/Error")


def test_both_api_key_schemes_are_documented_as_alternatives(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["BearerApiKey"]["type"] == "http"
    assert schemes["BearerApiKey"]["scheme"] == "bearer"
    assert schemes["HeaderApiKey"] == {**schemes["HeaderApiKey"], "type": "apiKey", "in": "header"}
    assert schemes["HeaderApiKey"]["name"] == "X-API-Key"

    # Each header works on its own, so each must be a separate requirement (OR),
    # not two schemes in one requirement (which OpenAPI reads as "send both").
    security = schema["paths"]["/api/v1/keys"]["get"]["security"]
    assert {"BearerApiKey": []} in security
    assert {"HeaderApiKey": []} in security


def test_the_docs_page_renders_and_points_at_the_schema(db):
    response = APIClient().get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert SCHEMA in response.content.decode()


def test_the_headers_our_answers_carry_are_documented(schema):
    candles = schema["paths"]["/api/v1/markets/{exchange}/{symbol}/candles"]["get"]
    headers = candles["responses"]["200"]["headers"]
    assert {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset", "X-Data-Delay"} <= set(
        headers
    )
    keys = schema["paths"]["/api/v1/keys"]["get"]["responses"]["200"]["headers"]
    assert "RateLimit-Remaining" in keys and "X-Data-Delay" not in keys


def test_nullable_and_bounded_fields_are_documented_as_such(schema):
    components = schema["components"]["schemas"]
    job = components["BacktestOut"]["properties"]
    assert job["started_at"]["nullable"] and job["finished_at"]["nullable"]
    assert not job["created_at"].get("nullable")
    for batch in ("OptionsPriceInRequest", "ImpliedVolatilityInRequest"):
        options = components[batch]["properties"]["options"]
        assert options["minItems"] == 1 and options["maxItems"] == 20_000


def test_every_error_an_operation_can_answer_is_documented(schema):
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            if not operation.get("security"):
                continue
            responses = operation["responses"]
            expected = {"401", "403", "429"} | ({"404"} if "{" in path else set())
            assert expected <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith("4"):
                    assert set(response["content"]) == {"application/json"}, (path, status)
                    assert response["content"]["application/json"]["schema"]["$ref"].endswith(
                        "/Error"
                    )


def test_csv_answers_are_described_as_csv_text(schema):
    book = schema["paths"]["/api/v1/markets/{exchange}/{symbol}/book"]["get"]["responses"]
    csv = book["200"]["content"]["text/csv"]["schema"]

    assert csv["type"] == "string" and "header row" in csv["description"]
