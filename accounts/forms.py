"""Forms of the organization, team and invitation pages.

Role fields accept every role: which roles the actor may grant is a membership
rule, decided (and explained to the user) by the services, not by the form.
"""

from __future__ import annotations

from django import forms

from accounts.models import Role


class OrganizationForm(forms.Form):
    name = forms.CharField(max_length=120, label="Organization name")

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the organization a name.")
        return name


class OrganizationSwitchForm(forms.Form):
    organization_id = forms.IntegerField(min_value=1)
    next = forms.CharField(required=False)


class InvitationForm(forms.Form):
    email = forms.EmailField(label="Email address")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)


class MembershipRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)
