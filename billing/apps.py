from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing and plans"

    def ready(self) -> None:
        from accounts.allowances import plan_allowances_register
        from billing import signals  # noqa: F401  (entitlement cache invalidation)
        from billing.allowances import EntitlementAllowances

        # Key and organization creation (accounts) ask the plan through this.
        plan_allowances_register(EntitlementAllowances())
