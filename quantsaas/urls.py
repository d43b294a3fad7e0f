from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from billing import views as billing_views
from billing.webhooks import stripe_webhook
from quantsaas import views

handler404 = "quantsaas.api.errors.page_not_found"
handler500 = "quantsaas.api.errors.server_error"

# The API is matched first, market data first within it: Django tries patterns in
# order, and programs polling market data make most of the requests.
api_v1 = [
    path("", include("marketdata.api.urls")),
    path("", include("analytics.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("billing.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("options/", views.options_calculator, name="options"),
    path("backtests/", views.backtests, name="backtests"),
    path("market/preview.json", views.market_preview_json, name="market_preview"),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("pricing/", billing_views.pricing, name="pricing"),
    path("billing/stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("billing/", include("billing.urls")),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
