"""Routes of the accounts API under /api/v1/."""

from django.urls import path

from accounts.api.keys import ApiKeyDetailView, ApiKeyListCreateView

urlpatterns = [
    path("keys", ApiKeyListCreateView.as_view(), name="api-keys"),
    path("keys/<int:api_key_id>", ApiKeyDetailView.as_view(), name="api-key-detail"),
]
