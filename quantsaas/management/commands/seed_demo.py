"""Create the demo data a developer needs to look around: an operator and a demo customer.

Development only. The passwords are generated on the first run, never fixed in
the code (a fixed password in a public repository is a known login on every
instance someone forgot to lock down), and kept in VAR_DIR/demo-logins.json,
readable by the owner only, so later runs print the same logins.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts.models import Membership, Organization, Role, User
from accounts.services.organizations import organization_create

OPERATOR_EMAIL = "operator@quantsaas.test"
DEMO_EMAIL = "demo@quantsaas.test"
DEMO_ORGANIZATION = "Demo Fund"
LOGINS_FILE = "demo-logins.json"


def demo_logins_path() -> Path:
    return Path(settings.VAR_DIR) / LOGINS_FILE


def demo_logins_load() -> dict[str, dict[str, str]] | None:
    """The logins of an earlier run, or None on the first one."""
    path = demo_logins_path()
    if not path.exists():
        return None
    logins: dict[str, dict[str, str]] = json.loads(path.read_text())
    return logins


def _demo_logins_ensure() -> dict[str, dict[str, str]]:
    logins = demo_logins_load()
    if logins is not None:
        return logins
    logins = {
        "operator": {"email": OPERATOR_EMAIL, "password": secrets.token_urlsafe(12)},
        "demo": {"email": DEMO_EMAIL, "password": secrets.token_urlsafe(12)},
    }
    path = demo_logins_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created with mode 0600 from the start (not chmod-ed afterwards), so the passwords
    # are never readable by other local users, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(logins, handle, indent=2)
    return logins


def _user_ensure(*, email: str, password: str, superuser: bool) -> User:
    """The user exists, can log in with `password` and has a verified primary email."""
    user = User.objects.filter(email=email).first()
    if user is None:
        manager = User.objects.create_superuser if superuser else User.objects.create_user
        user = manager(email=email, password=password)
    elif not user.check_password(password):
        # The logins file is the source of truth: whatever it says must work.
        user.set_password(password)
        user.save(update_fields=["password"])
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    return user


def _demo_organization_ensure(*, owner: User) -> Organization:
    membership = (
        Membership.objects.filter(user=owner, role=Role.OWNER, organization__name=DEMO_ORGANIZATION)
        .select_related("organization")
        .first()
    )
    if membership is not None:
        return membership.organization
    return organization_create(name=DEMO_ORGANIZATION, owner=owner)


@transaction.atomic
def demo_data_seed() -> dict[str, dict[str, str]]:
    """Idempotent: running it again changes nothing and returns the same logins."""
    logins = _demo_logins_ensure()
    _user_ensure(
        email=logins["operator"]["email"], password=logins["operator"]["password"], superuser=True
    )
    demo = _user_ensure(
        email=logins["demo"]["email"], password=logins["demo"]["password"], superuser=False
    )
    _demo_organization_ensure(owner=demo)
    return logins


def demo_logins_format(logins: dict[str, Any]) -> str:
    rows = [
        ("operator (superuser, /admin/)", logins["operator"]),
        (f"demo user (owns {DEMO_ORGANIZATION})", logins["demo"]),
    ]
    lines = [f"Demo logins (development only; kept in {demo_logins_path()}):"]
    lines += [
        f"  {label:<30} email: {login['email']:<26} password: {login['password']}"
        for label, login in rows
    ]
    return "\n".join(lines)


class Command(BaseCommand):
    help = "Create (idempotently) an operator superuser and a demo user owning a demo organization."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force",
            action="store_true",
            help="Seed even when DEBUG is off (never do this on a public instance).",
        )

    def handle(self, *args: Any, force: bool = False, **options: Any) -> None:
        # Demo accounts are known logins (their passwords sit in a file): a production
        # instance must never get them by accident, so DEBUG off refuses unless forced.
        if not settings.DEBUG and not force:
            raise CommandError(
                "seed_demo is for development only and DEBUG is off. "
                "Set DEBUG=1, or pass --force if you really want demo accounts here."
            )
        logins = demo_data_seed()
        if options["verbosity"] >= 1:
            self.stdout.write(demo_logins_format(logins))
