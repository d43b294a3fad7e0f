"""Web pages for alert rules of the current organization."""

from django.urls import path

from alerts import views

urlpatterns = [
    path("", views.alert_list, name="alerts"),
    path("new/", views.alert_create, name="alert_create"),
    path("secret/rotate/", views.alert_secret_rotate, name="alert_secret_rotate"),
    path("<int:rule_id>/toggle/", views.alert_toggle, name="alert_toggle"),
    path("<int:rule_id>/delete/", views.alert_delete, name="alert_delete"),
]
