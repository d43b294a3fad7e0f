"""Organization.created_by, backfilled from the audit log's "organization created" rows."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def backfill(apps, schema_editor):
    Organization = apps.get_model("accounts", "Organization")
    AuditLog = apps.get_model("accounts", "AuditLog")
    rows = AuditLog.objects.filter(action="organization.created", actor__isnull=False)
    for organization_id, actor_id in rows.values_list("organization_id", "actor_id"):
        Organization.objects.filter(pk=organization_id, created_by__isnull=True).update(
            created_by_id=actor_id
        )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_auditlog_backtest_submitted"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="organization",
            name="created_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
    ]
