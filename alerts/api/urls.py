"""Routes of the alerts API under /api/v1/."""

from django.urls import path

from alerts.api import views

urlpatterns = [
    path("alerts", views.AlertRuleListView.as_view(), name="alert-rules"),
    path("alerts/deliveries", views.AlertDeliveryListView.as_view(), name="alert-deliveries"),
    path(
        "alerts/webhook-secret",
        views.AlertWebhookSecretView.as_view(),
        name="alert-webhook-secret",
    ),
    path("alerts/<int:rule_id>", views.AlertRuleDetailView.as_view(), name="alert-rule-detail"),
]
