"""Demo data: development only, idempotent, generated passwords kept private."""

from __future__ import annotations

import json
import stat
from io import StringIO

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command

from accounts.models import Membership, Organization, Role, User


@pytest.fixture
def development(db, settings, tmp_path):
    settings.DEBUG = True
    settings.VAR_DIR = tmp_path
    return tmp_path


def _seed(*args: str) -> str:
    out = StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_seed_demo_refuses_when_debug_is_off(db, settings, tmp_path):
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path

    with pytest.raises(CommandError, match="development only"):
        _seed()

    assert not User.objects.exists()
    assert not (tmp_path / "demo-logins.json").exists()


def test_seed_demo_runs_with_debug_off_only_when_forced(db, settings, tmp_path):
    settings.DEBUG = False
    settings.VAR_DIR = tmp_path

    _seed("--force")

    assert User.objects.filter(is_superuser=True).count() == 1


def test_seed_demo_creates_logins_that_work(development):
    _seed()

    logins = json.loads((development / "demo-logins.json").read_text())
    operator = authenticate(
        email=logins["operator"]["email"], password=logins["operator"]["password"]
    )
    demo = authenticate(email=logins["demo"]["email"], password=logins["demo"]["password"])
    assert operator is not None and operator.is_superuser and operator.is_staff
    assert demo is not None and not demo.is_staff
    assert EmailAddress.objects.filter(user=demo, verified=True, primary=True).exists()
    owned = Membership.objects.get(user=demo, role=Role.OWNER)
    assert not owned.organization.is_personal


def test_seed_demo_passwords_are_generated_and_private(development, settings, tmp_path_factory):
    _seed()
    first = json.loads((development / "demo-logins.json").read_text())
    mode = stat.S_IMODE((development / "demo-logins.json").stat().st_mode)
    settings.VAR_DIR = tmp_path_factory.mktemp("other-checkout")
    User.objects.all().delete()
    _seed()
    second = json.loads((settings.VAR_DIR / "demo-logins.json").read_text())

    assert mode == 0o600
    assert first["demo"]["password"] != second["demo"]["password"]
    assert first["operator"]["password"] != second["operator"]["password"]


def test_seed_demo_twice_changes_nothing_and_prints_the_same_logins(development):
    first_output = _seed()
    counts = (User.objects.count(), Organization.objects.count(), Membership.objects.count())

    second_output = _seed()

    assert second_output == first_output
    logins = json.loads((development / "demo-logins.json").read_text())
    assert logins["demo"]["password"] in second_output
    assert (User.objects.count(), Organization.objects.count(), Membership.objects.count()) == (
        counts
    )


def test_seed_demo_restores_the_printed_password_when_the_database_disagrees(development):
    _seed()
    logins = json.loads((development / "demo-logins.json").read_text())
    demo = User.objects.get(email=logins["demo"]["email"])
    demo.set_password("something-else-entirely-123")
    demo.save()

    _seed()

    assert authenticate(email=logins["demo"]["email"], password=logins["demo"]["password"])
