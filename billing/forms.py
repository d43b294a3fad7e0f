from django import forms

from billing.selectors import plans_public


class CheckoutForm(forms.Form):
    """Which paid plan to buy; only plans offered on the pricing page are accepted."""

    plan = forms.ChoiceField(choices=())

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["plan"].choices = [
            (plan.code, plan.name) for plan in plans_public() if not plan.is_free
        ]
