from django.apps import AppConfig


class MarketDataConfig(AppConfig):
    name = "marketdata"
    verbose_name = "Market data"

    def ready(self) -> None:
        from marketdata import signals  # noqa: F401  (connects the cache invalidation)
        from marketdata.feeds.health import readiness_register

        readiness_register()
