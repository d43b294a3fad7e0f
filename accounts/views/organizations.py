"""Placeholder: replaced by the page's implementation."""

from django.http import HttpResponse


def organization_create(request, **kwargs):
    return HttpResponse(status=501)


def organization_switch(request, **kwargs):
    return HttpResponse(status=501)
