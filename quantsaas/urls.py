from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect, JsonResponse
from django.urls import Resolver404, URLPattern, URLResolver, include, path, re_path, resolve
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.views import SpectacularAPIView

from billing import views as billing_views
from billing.webhooks import stripe_webhook
from quantsaas import views
from quantsaas.api.errors import error_body
from quantsaas.metrics.web import metrics_view

handler404 = "quantsaas.api.errors.page_not_found"
handler500 = "quantsaas.api.errors.server_error"

# The API is matched first, market data first within it: Django tries patterns in
# order, and programs polling market data make most of the requests.
api_v1: list[URLPattern | URLResolver] = [
    path("", include("marketdata.api.urls")),
    path("", include("analytics.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("billing.api.urls")),
    path("", include("alerts.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("asyncapi.json", views.asyncapi_json, name="api-asyncapi"),  # the stream's contract
]


@csrf_exempt
def api_not_found(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Any URL under /api/ that no view matched: 404 in the API's error shape, whatever the
    method, in DEBUG as in production (Django's handler404 is bypassed in DEBUG).

    Being a route, it would stop CommonMiddleware's APPEND_SLASH redirect; it does that
    itself for a GET whose path with a slash is a real route (e.g. /api/v1/schema).
    """
    if settings.APPEND_SLASH and request.method in ("GET", "HEAD") and not rest.endswith("/"):
        try:
            match = resolve(request.path_info + "/")
        except Resolver404:
            match = None
        if match is not None and match.func is not api_not_found:
            return HttpResponsePermanentRedirect(request.get_full_path(force_append_slash=True))
    return JsonResponse(error_body("not_found", "Not found."), status=404)


urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("options/", views.options_calculator, name="options"),
    path("backtests/", views.backtests, name="backtests"),
    path("alerts/", include("alerts.urls")),
    path("market/preview.json", views.market_preview_json, name="market_preview"),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("pricing/", billing_views.pricing, name="pricing"),
    path("billing/stripe/webhook/", stripe_webhook, name="stripe_webhook"),
    path("billing/", include("billing.urls")),
    path("api/docs/", views.ApiDocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),  # staff; scrapers use METRICS_TOKEN
    re_path(r"^api/(?P<rest>.*)$", api_not_found),  # last: only what nothing else matched
]
