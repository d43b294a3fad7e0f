"""Plans gain a limit on alert rules (alerts app). Values copied here, as in 0002."""

from django.db import migrations, models

ALERT_RULES = {"free": 3, "pro": 50, "enterprise": 1000}


def seed(apps, schema_editor):
    Plan = apps.get_model("billing", "Plan")
    for code, limit in ALERT_RULES.items():
        Plan.objects.filter(code=code).update(alert_rules=limit)


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_upgrade_request")]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="alert_rules",
            field=models.PositiveIntegerField(
                default=3,
                help_text="Alert rules an organization may keep.",
                verbose_name="alert rules allowed",
            ),
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
