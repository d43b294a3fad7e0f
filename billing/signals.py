"""Drop an organization's cached entitlements whenever what they derive from changes.

Signals (not only the services) because operators also edit these rows in the
admin, and a grant there must apply at once. Invalidation runs now and again
after commit, so a request racing the transaction cannot re-cache stale data.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billing.entitlements import entitlements_invalidate
from billing.models import PlanOverride, Subscription


@receiver([post_save, post_delete], sender=Subscription)
@receiver([post_save, post_delete], sender=PlanOverride)
def invalidate_entitlements(
    sender: type[Subscription | PlanOverride], instance: Subscription | PlanOverride, **kwargs: Any
) -> None:
    organization_id = instance.organization_id
    entitlements_invalidate(organization_id=organization_id)
    transaction.on_commit(lambda: entitlements_invalidate(organization_id=organization_id))
