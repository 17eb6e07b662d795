"""The `default` price group exists from the start: every tenant created without a group is in
it, and `create_tenant --group` refuses groups that do not exist."""

from django.db import migrations


def create_default_group(apps, schema_editor):
    Group = apps.get_model("billing", "Group")
    Group.objects.get_or_create(name="default")


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_plural_names"),
    ]

    operations = [
        migrations.RunPython(create_default_group, migrations.RunPython.noop),
    ]
