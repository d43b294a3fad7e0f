"""Placeholder: replaced by the page's implementation."""

from django.http import HttpResponse


def team(request, **kwargs):
    return HttpResponse(status=501)


def invitation_create(request, **kwargs):
    return HttpResponse(status=501)


def invitation_revoke(request, **kwargs):
    return HttpResponse(status=501)


def membership_role(request, **kwargs):
    return HttpResponse(status=501)


def membership_remove(request, **kwargs):
    return HttpResponse(status=501)
