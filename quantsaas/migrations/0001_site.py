"""Name the site QuantSaaS, so anything that reads django.contrib.sites says so.

allauth and the admin read Site 1 (settings.SITE_ID). The deployment's real host
is not knowable inside a migration, so the domain is the development address;
operators set the production domain in the admin (Sites). Links in emails are
built from the request, not from this domain.
"""

from django.core.management.color import no_style
from django.db import migrations

SITE_ID = 1
NAME = "QuantSaaS"
DOMAIN = "localhost:8000"


def site_name(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    _, created = Site.objects.update_or_create(
        pk=SITE_ID, defaults={"domain": DOMAIN, "name": NAME}
    )
    if created:
        # An explicit primary key does not advance PostgreSQL's sequence; reset it as
        # django.contrib.sites does, or the next site added in the admin would collide.
        connection = schema_editor.connection
        for sql in connection.ops.sequence_reset_sql(no_style(), [Site]):
            schema_editor.execute(sql)


def site_unname(apps, schema_editor):
    Site = apps.get_model("sites", "Site")
    Site.objects.filter(pk=SITE_ID).update(domain="example.com", name="example.com")


class Migration(migrations.Migration):
    dependencies = [("sites", "0002_alter_domain_unique")]

    operations = [migrations.RunPython(site_name, site_unname)]
