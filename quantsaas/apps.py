from django.apps import AppConfig


class QuantSaaSConfig(AppConfig):
    """Project-wide pieces: management commands (serve, seed_demo), the site migration."""

    name = "quantsaas"
    verbose_name = "QuantSaaS"
