"""Suite-wide fixtures: real PostgreSQL and Redis, named actors, API clients.

Tests use their own Redis database number (REDIS_URL in pyproject.toml) and
flush only that one; pytest-django creates its own test database.
"""

from __future__ import annotations

import importlib
import os
import socket
from urllib.parse import urlparse

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from billing.ratelimit import leases_forget
from quantsaas.cache import LocalCache
from quantsaas.health import readiness_cache_clear
from tests.factories import OrganizationFactory, UserFactory, membership_add


def _reachable(url: str, default_port: int) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), 2
        ):
            return True
    except OSError:
        return False


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop at once, and say how to fix it, when a required server is down."""
    problems = []
    if not _reachable(os.environ["DATABASE_URL"], 5432):
        problems.append(
            f"PostgreSQL is not reachable at DATABASE_URL={os.environ['DATABASE_URL']}.\n"
            "  Start it:  pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    if not _reachable(os.environ["REDIS_URL"], 6379):
        problems.append(
            f"Redis is not reachable at REDIS_URL={os.environ['REDIS_URL']}.\n"
            '  Start it:  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" '
            "--appendonly no"
        )
    if problems:
        pytest.exit("The test suite needs real servers:\n" + "\n".join(problems), returncode=3)


def pytest_xdist_setupnodes(config: pytest.Config, specs: list) -> None:
    """`make test` runs two pytest-xdist workers. Each gets its own Redis database (the
    next numbers after REDIS_URL's), as it gets its own PostgreSQL test database from
    pytest-django: a worker's flush, stream seqs and Celery queue never touch the other's."""
    parsed = urlparse(os.environ["REDIS_URL"])
    first = int(parsed.path.lstrip("/") or 0)
    for offset, spec in enumerate(specs):
        url = parsed._replace(path=f"/{first + offset}").geturl()
        spec.env.setdefault("REDIS_URL", url)


# Reference rows that data migrations seed. A transactional test ends with a flush of
# every table, which would leave later tests without plans or exchanges. Django's flush
# emits post_migrate, so the seeds are re-applied from that signal.
REFERENCE_DATA_SEEDS = [
    ("quantsaas.migrations.0001_site", "site_name"),
    ("billing.migrations.0002_seed_plans", "seed"),
    ("billing.migrations.0004_plan_alert_rules", "seed"),
    ("billing.migrations.0005_plan_book_depth_conflate_floor", "seed"),
    ("marketdata.migrations.0003_seed_exchanges", "seed"),
]


def reference_data_seed(sender=None, using: str = "default", **kwargs) -> None:
    from django.apps import apps
    from django.db import connections

    with connections[using].schema_editor() as schema_editor:
        for module, function in REFERENCE_DATA_SEEDS:
            getattr(importlib.import_module(module), function)(apps, schema_editor)


def pytest_configure(config: pytest.Config) -> None:
    from django.apps import apps
    from django.db.models.signals import post_migrate

    # Once per flush: after the last app's post_migrate handlers (sites creates Site 1).
    last_app = list(apps.get_app_configs())[-1]
    post_migrate.connect(reference_data_seed, sender=last_app, dispatch_uid="reference-data")


@pytest.fixture(autouse=True)
def _clean_redis():
    """Each test starts with an empty test Redis database (only ours is flushed) and
    empty in-process caches."""
    cache.clear()
    LocalCache.clear_all()
    leases_forget()
    readiness_cache_clear()
    yield
    cache.clear()
    LocalCache.clear_all()
    leases_forget()


# --- named actors -----------------------------------------------------------------------
# Alice owns Acme; Bob is an admin there and Carol a member. Mallory owns Globex, the
# second organization every API test module uses to prove tenant isolation.


@pytest.fixture
def alice(db):
    return UserFactory(email="alice@acme.test")


@pytest.fixture
def acme(alice):
    return OrganizationFactory(name="Acme Capital", owner=alice)


@pytest.fixture
def bob(acme):
    user = UserFactory(email="bob@acme.test")
    membership_add(organization=acme, user=user, role="admin")
    return user


@pytest.fixture
def carol(acme):
    user = UserFactory(email="carol@acme.test")
    membership_add(organization=acme, user=user, role="member")
    return user


@pytest.fixture
def mallory(db):
    return UserFactory(email="mallory@globex.test")


@pytest.fixture
def globex(mallory):
    return OrganizationFactory(name="Globex Trading", owner=mallory)


@pytest.fixture
def admin_client(admin_user):
    """pytest-django's admin client, signed in the way the admin requires: password and
    a TOTP code (accounts.middleware.StaffMfaMiddleware)."""
    from tests.mfa import staff_client

    return staff_client(admin_user)


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


def client_for(user, organization=None) -> APIClient:
    """A session-authenticated API client acting in `organization`."""
    client = APIClient()
    client.force_login(user)
    if organization is not None:
        session = client.session
        session["organization_id"] = organization.pk
        session.save()
    return client


@pytest.fixture
def alice_client(alice, acme) -> APIClient:
    return client_for(alice, acme)


@pytest.fixture
def mallory_client(mallory, globex) -> APIClient:
    return client_for(mallory, globex)
