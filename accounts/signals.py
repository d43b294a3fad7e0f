"""Reactions to changes: a personal organization at signup, cached API keys dropped."""

from typing import Any

from allauth.account.signals import user_signed_up
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http import HttpRequest

from accounts.api_key_cache import api_key_cache_forget
from accounts.models import ApiKey, Organization, User
from accounts.services.organizations import personal_organization_ensure


@receiver(user_signed_up)
def create_personal_organization(
    sender: object, request: HttpRequest | None, user: User, **kwargs: Any
) -> None:
    personal_organization_ensure(user=user)


def _forget_now_and_after_commit(digests: list[str]) -> None:
    # Again after commit, so a request racing the transaction cannot re-cache old rows.
    api_key_cache_forget(*digests)
    transaction.on_commit(lambda: api_key_cache_forget(*digests))


@receiver([post_save, post_delete], sender=ApiKey)
def forget_cached_api_key(sender: type[ApiKey], instance: ApiKey, **kwargs: Any) -> None:
    if kwargs.get("created"):
        return  # nothing cached yet
    _forget_now_and_after_commit([instance.key_hash])


@receiver([post_save, post_delete], sender=Organization)
def forget_cached_api_keys_of_organization(
    sender: type[Organization], instance: Organization, **kwargs: Any
) -> None:
    # Cached keys carry their organization; an edited or deleted one must not linger.
    if kwargs.get("created"):
        return
    digests = list(
        ApiKey.objects.filter(organization_id=instance.pk).values_list("key_hash", flat=True)
    )
    _forget_now_and_after_commit(digests)
