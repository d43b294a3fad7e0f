"""Placeholder: replaced by the page's implementation."""

from django.http import HttpResponse


def invitation_accept(request, **kwargs):
    return HttpResponse(status=501)
