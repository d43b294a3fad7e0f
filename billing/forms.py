from typing import Any, cast

from django import forms

from billing.selectors import plans_public


class CheckoutForm(forms.Form):
    """Which paid plan to buy; only plans offered on the pricing page are accepted."""

    plan = forms.ChoiceField(choices=())

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["plan"]).choices = [
            (plan.code, plan.name) for plan in plans_public() if not plan.is_free
        ]


class UpgradeRequestForm(forms.Form):
    """Asking for a paid plan while online payment is not configured."""

    plan = forms.ChoiceField(choices=(), label="Plan")
    message = forms.CharField(
        required=False,
        max_length=2000,
        label="Anything we should know? (optional)",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="For example how you will use the data, or a purchase order number.",
    )

    def __init__(self, *args: Any, exclude: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["plan"]).choices = [
            (plan.code, f"{plan.name} (${plan.price_display} a month)")
            for plan in plans_public()
            if not plan.is_free and plan.code != exclude
        ]
