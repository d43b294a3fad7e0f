from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView

from quantsaas import views

handler404 = "quantsaas.api.errors.page_not_found"
handler500 = "quantsaas.api.errors.server_error"

api_v1 = [
    path("", include("accounts.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("", views.landing, name="landing"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("accounts/", include("allauth.urls")),
    path("", include("accounts.urls")),
    path("api/v1/", include(api_v1)),
    path("api/docs/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
