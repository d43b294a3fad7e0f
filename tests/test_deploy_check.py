"""Production settings pass Django's deployment checklist, and refuse to start unsafely.

The test process itself runs with QUANTSAAS_TESTING (plain-HTTP cookies, fast
hashing), so the production values are checked in a fresh `manage.py` process
with the environment an operator would set.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

from django.conf import settings

# Variables that would weaken or change what production gets; an operator does not set them.
NOT_IN_PRODUCTION = {
    "QUANTSAAS_TESTING",
    "SECRET_KEY",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
    "VAR_DIR",
}


def _production_env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in NOT_IN_PRODUCTION}
    env.update(
        DEBUG="0",
        SECRET_KEY=secrets.token_urlsafe(64),
        ALLOWED_HOSTS="quantsaas.example.com",
        DATABASE_URL=os.environ["DATABASE_URL"],
        REDIS_URL=os.environ["REDIS_URL"],
    )
    env.update(overrides)
    return {key: value for key, value in env.items() if value is not None}


def _manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_deploy_passes_with_production_settings():
    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=_production_env())

    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_flags_a_weak_secret_key():
    """The previous test means something only if the checklist can fail here at all."""
    env = _production_env(SECRET_KEY="short")

    result = _manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert result.returncode != 0
    assert "security.W009" in result.stdout + result.stderr


def test_production_without_secret_key_refuses_to_start_with_a_clear_message():
    env = _production_env()
    del env["SECRET_KEY"]

    result = _manage("check", env=env)

    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
