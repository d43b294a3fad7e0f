import socket
import threading
import time

import pytest

from quantsaas import health

TOKEN = "monitoring-token"


@pytest.fixture
def monitor(client, settings):
    """A client sending the monitoring token: it gets the per-check report."""
    settings.READYZ_TOKEN = TOKEN
    client.defaults["HTTP_X_READYZ_TOKEN"] = TOKEN
    return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_liveness_answers_without_touching_dependencies(client, settings):
    settings.ALLOWED_HOSTS = []  # served before host validation and every other middleware
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readiness_reports_every_dependency_ok(monitor):
    response = monitor.get("/readyz")
    assert response.status_code == 200
    checks = response.json()["checks"]
    assert {name: check["ok"] for name, check in checks.items()} == {
        "database": True,
        "redis": True,
        "broker": True,
        "feeds": True,  # no runner has reported: unknown is not a failure
    }


@pytest.mark.django_db
def test_readiness_names_a_stopped_redis(monitor, settings):
    dead = f"redis://127.0.0.1:{_free_port()}/0"
    settings.REDIS_URL = dead
    settings.CELERY_BROKER_URL = dead
    response = monitor.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["broker"]["ok"] is False
    assert "Connection" in body["checks"]["redis"]["error"]


@pytest.mark.django_db
def test_anonymous_callers_get_the_status_alone(client, settings):
    settings.READYZ_TOKEN = TOKEN
    assert client.get("/readyz").json() == {"status": "ok"}
    wrong = client.get("/readyz", HTTP_X_READYZ_TOKEN="guess")
    assert wrong.json() == {"status": "ok"}


@pytest.mark.django_db
def test_staff_sessions_see_the_report(client, django_user_model):
    staff = django_user_model.objects.create_user(
        email="ops@example.test", password="x" * 12, is_staff=True
    )
    client.force_login(staff)
    assert "database" in client.get("/readyz").json()["checks"]


@pytest.mark.django_db
def test_a_failing_check_never_echoes_the_exception_text(monitor, monkeypatch):
    def leaky() -> dict:
        raise RuntimeError("password=hunter2 host=db.internal")

    monkeypatch.setitem(health._extra_checks, "leaky", leaky)
    response = monitor.get("/readyz")
    assert response.status_code == 503
    assert response["Retry-After"]
    assert "hunter2" not in response.content.decode()
    assert response.json()["checks"]["leaky"] == {
        "ok": False,
        "error": "RuntimeError",
        "latency_ms": response.json()["checks"]["leaky"]["latency_ms"],
    }


@pytest.mark.django_db
def test_a_hanging_check_cannot_hang_readyz(monitor, monkeypatch):
    release = threading.Event()

    def hangs() -> dict:
        release.wait(30)
        return {"ok": True}

    monkeypatch.setitem(health._extra_checks, "hangs", hangs)
    started = time.monotonic()
    try:
        response = monitor.get("/readyz")
    finally:
        release.set()
    assert time.monotonic() - started < health.CHECK_TIMEOUT_SECONDS + 1
    assert response.status_code == 503
    assert response.json()["checks"]["hangs"]["error"] == "timeout"
    assert response.json()["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_answers_are_cached_for_a_couple_of_seconds(client, monkeypatch):
    calls = []
    monkeypatch.setitem(health._extra_checks, "counted", lambda: calls.append(1) or {"ok": True})
    for _ in range(5):
        assert client.get("/readyz").status_code == 200
    assert len(calls) == 1
