"""API key scopes and the key that created a key.

Existing keys get every scope: until now a key could do all of it (read, run
backtests, create and revoke keys), and customers' programs rely on that. New
keys default to read only. docs/decisions.md, "API key scopes".
"""

import django.db.models.deletion
from django.db import migrations, models

import accounts.models

EVERY_SCOPE = ["read", "trade-analytics", "admin"]


def every_scope():
    return list(EVERY_SCOPE)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0003_organization_created_by"),
    ]

    operations = [
        # Added with every scope, which fills the existing rows; then the default for new
        # keys becomes read only.
        migrations.AddField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(
                default=every_scope, help_text="Any of: read, trade-analytics, admin."
            ),
        ),
        migrations.AlterField(
            model_name="apikey",
            name="scopes",
            field=models.JSONField(
                default=accounts.models.api_key_scopes_default,
                help_text="Any of: read, trade-analytics, admin.",
            ),
        ),
        migrations.AddField(
            model_name="apikey",
            name="created_by_key",
            field=models.ForeignKey(
                blank=True,
                help_text="The API key that created this one, if a program did.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="created_keys",
                to="accounts.apikey",
            ),
        ),
    ]
