"""Every API failure answers in the one shape of docs/api.md: {"error": {code, message,
details}}."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey
from tests.conftest import client_for

KEYS = "/api/v1/keys"


def error_of(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    return error


def test_invalid_input_is_400_and_names_every_bad_field(alice_client):
    response = alice_client.post(KEYS, {"name": "x" * 101, "expires_at": "soon"}, format="json")

    error = error_of(response, 400, "invalid")
    assert set(error["details"]["fields"]) == {"name", "expires_at"}
    assert all(error["details"]["fields"].values())
    assert not ApiKey.objects.exists()


def test_malformed_json_is_400_invalid(alice_client):
    response = alice_client.post(KEYS, "{not json", content_type="application/json")

    error_of(response, 400, "invalid")


def test_missing_credentials_are_401(db):
    error_of(APIClient().get(KEYS), 401, "authentication_failed")


def test_a_bad_key_is_401(db):
    client = APIClient()
    client.credentials(HTTP_X_API_KEY="qs_" + "z" * 43)

    error_of(client.get(KEYS), 401, "authentication_failed")


def test_a_member_writing_is_403(acme, carol):
    response = client_for(carol, acme).post(KEYS, {}, format="json")

    error_of(response, 403, "permission_denied")


@pytest.mark.parametrize("path", ["/api/v1/no-such-thing", "/api/v2/keys", "/api/v1/keys/7/x"])
def test_an_unknown_api_route_is_404_in_the_error_shape(alice_client, path):
    error_of(alice_client.get(path), 404, "not_found")


def test_an_unknown_api_route_is_404_even_signed_out(db):
    error_of(APIClient().get("/api/v1/no-such-thing"), 404, "not_found")


def test_a_missing_object_is_404(alice_client):
    error_of(alice_client.delete(f"{KEYS}/987654321"), 404, "not_found")


@pytest.mark.parametrize(("method", "path"), [("put", KEYS), ("patch", KEYS), ("get", f"{KEYS}/1")])
def test_an_unsupported_method_is_405(alice_client, method, path):
    response = getattr(alice_client, method)(path, {}, format="json")

    error = error_of(response, 405, "method_not_allowed")
    assert method.upper() in error["message"]


def test_an_unsupported_media_type_is_415(alice_client):
    response = alice_client.post(KEYS, "name=x", content_type="application/x-www-form-urlencoded")

    error_of(response, 415, "unsupported_media_type")
