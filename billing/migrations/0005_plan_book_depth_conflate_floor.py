"""Plans gain a book depth cap and a stream conflation floor. Values copied here, as in 0002.

Free: books 20 levels deep (the stream's default view, and enough for the dashboard's
12) and at most one stream frame per channel a second; its data is 15 minutes late,
so latency is not what it buys. Paid plans: the full 50 levels and every update as
it comes.
"""

import django.core.validators
from django.db import migrations, models

LIMITS = {
    "free": {"book_depth": 20, "stream_conflate_floor_ms": 1000},
    "pro": {"book_depth": 50, "stream_conflate_floor_ms": 0},
    "enterprise": {"book_depth": 50, "stream_conflate_floor_ms": 0},
}


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, limits in LIMITS.items():
        Plan.objects.filter(code=code).update(**limits)


class Migration(migrations.Migration):
    dependencies = [("billing", "0004_plan_alert_rules")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="book_depth",
            field=models.PositiveIntegerField(
                default=50,
                help_text="Most levels a side a book read or subscription may ask for (10 to 50).",
                validators=[
                    django.core.validators.MinValueValidator(10),
                    django.core.validators.MaxValueValidator(50),
                ],
                verbose_name="order book depth",
            ),
        ),
        migrations.AddField(
            model_name="plan",
            name="stream_conflate_floor_ms",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Least conflate_ms a stream subscription gets: at most one frame per "
                "channel this often. 0: every update as it comes.",
                validators=[django.core.validators.MaxValueValidator(60000)],
                verbose_name="stream conflation floor (ms)",
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
