"""Admin classes that take their model as a type argument, as django-stubs declares them.

django-stubs makes ModelAdmin, the inlines, the user admin and the user forms generic in
their model, so `ModelAdmin[Organization]` types `get_queryset` and the actions. Django's
own classes cannot be subscripted at runtime (that needs django_stubs_ext's monkeypatch,
a development-only package): at runtime these names give back Django's class unchanged,
so the admin's class hierarchy is exactly Django's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

from django.contrib import admin
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import forms as auth_forms

_Class = TypeVar("_Class", bound=type)

if TYPE_CHECKING:
    ModelAdmin = admin.ModelAdmin
    TabularInline = admin.TabularInline
    UserAdmin = auth_admin.UserAdmin
    AdminUserCreationForm = auth_forms.AdminUserCreationForm
    UserChangeForm = auth_forms.UserChangeForm
else:

    class _Subscriptable(Generic[_Class]):
        """`X[Model]` is Django's class X: the type argument is for the checker only."""

        def __init__(self, cls: _Class) -> None:
            self._cls = cls

        def __getitem__(self, _model: object) -> _Class:
            return self._cls

    ModelAdmin = _Subscriptable(admin.ModelAdmin)
    TabularInline = _Subscriptable(admin.TabularInline)
    UserAdmin = _Subscriptable(auth_admin.UserAdmin)
    AdminUserCreationForm = _Subscriptable(auth_forms.AdminUserCreationForm)
    UserChangeForm = _Subscriptable(auth_forms.UserChangeForm)
