"""The audit log refuses UPDATE and DELETE in the database itself (PostgreSQL), like the
ledger: no code path, admin action or hand-written SQL can rewrite who did what."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION observability_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'observability_auditrecord is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER observability_audit_append_only
    BEFORE UPDATE OR DELETE ON observability_auditrecord
    FOR EACH ROW EXECUTE FUNCTION observability_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS observability_audit_append_only ON observability_auditrecord;
DROP FUNCTION IF EXISTS observability_audit_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("observability", "0005_audit_log")]
    operations = [migrations.RunPython(forwards, backwards)]
