"""Billing pages under /billing/ (pricing and the webhook are routed in quantsaas/urls.py)."""

from django.urls import path

from billing import views

urlpatterns = [
    path("", views.billing_overview, name="billing"),
    path("usage/", views.usage_page, name="usage"),
    path("checkout/", views.checkout_start, name="billing_checkout"),
    path("upgrade-request/", views.upgrade_request, name="upgrade_request"),
    path("portal/", views.portal_start, name="billing_portal"),
    path("success/", views.checkout_success, name="billing_success"),
    path("cancel/", views.checkout_cancel, name="billing_cancel"),
]
