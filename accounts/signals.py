from allauth.account.signals import user_signed_up
from django.dispatch import receiver

from accounts.services.organizations import personal_organization_ensure


@receiver(user_signed_up)
def create_personal_organization(sender, request, user, **kwargs) -> None:
    personal_organization_ensure(user=user)
