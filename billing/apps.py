from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and plans"

    def ready(self) -> None:
        from billing import signals  # noqa: F401  (entitlement cache invalidation)
