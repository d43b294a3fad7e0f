"""An edited or deleted exchange or instrument is forgotten by this process's cache."""

from typing import Any

from django.db.models import Model
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from marketdata.models import Exchange, Instrument
from marketdata.selectors import instruments_forget


@receiver([post_save, post_delete], sender=Instrument)
@receiver([post_save, post_delete], sender=Exchange)
def forget_cached_instruments(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    instruments_forget()
