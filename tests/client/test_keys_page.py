"""The API keys page shows a customer how to use the key from Python."""

from __future__ import annotations

from django.urls import reverse

from tests.accounts.test_api_key_pages import page_client


def test_the_api_keys_page_shows_the_python_client_quick_start(alice, acme, carol):
    for user in (alice, carol):  # members who cannot create keys use them too
        page = page_client(user, acme).get(reverse("api_keys")).content.decode()
        assert 'id="python-client"' in page
        assert "pip install ./clients/python" in page
        assert "QUANTSAAS_URL=http://testserver" in page
        assert reverse("api-docs") in page
