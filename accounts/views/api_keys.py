"""Placeholder: replaced by the page's implementation."""

from django.http import HttpResponse


def api_key_list(request, **kwargs):
    return HttpResponse(status=501)


def api_key_create(request, **kwargs):
    return HttpResponse(status=501)


def api_key_revoke(request, **kwargs):
    return HttpResponse(status=501)
