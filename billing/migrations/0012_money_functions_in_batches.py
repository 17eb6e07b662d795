"""On PostgreSQL, several holds can open, or end, in one function call: one transaction, one
commit and one lock of the balance row for all of them (docs/decisions/016-money-calls-in-batches.md).

Each item of a batch runs the one-hold function of migration 0011, in array order, so a batch
of N gives what the same N calls one after the other give; an opening refused by the balance
or a cap is undone on its own (a block with its own savepoint) and the others go on.

Lock order, the one every writer keeps: hold rows, then the balance, then the key's day and
month spend. `tokenhub_hold_open_many` serves one balance and one key (its callers group
them); `tokenhub_hold_end_many` may end holds of several balances, so it locks their holds,
then their balances in id order, before the first item runs."""

from django.db import migrations

CREATE = r"""
-- One hold id per item, in order, or the refusal's code: -1 the balance, -2 the daily cap,
-- -3 the monthly cap (nothing of that item is held).
CREATE OR REPLACE FUNCTION tokenhub_hold_open_many(
    p_hold_keys text[], p_request_ids text[], p_tenant_id bigint, p_kind text, p_models text[],
    p_amounts bigint[], p_floors bigint[], p_cap_amounts bigint[], p_key_id bigint,
    p_day date, p_month date, p_day_cap bigint, p_month_cap bigint, p_now timestamptz
) RETURNS bigint[] LANGUAGE plpgsql AS $$
DECLARE
    v_out bigint[] := '{}';
BEGIN
    FOR i IN 1 .. coalesce(array_length(p_hold_keys, 1), 0) LOOP
        BEGIN
            v_out := v_out || tokenhub_hold_open(
                p_hold_keys[i], p_request_ids[i], p_tenant_id, p_kind, p_models[i], p_amounts[i], p_floors[i],
                p_cap_amounts[i], p_key_id, p_day, p_month, p_day_cap, p_month_cap, p_now);
        EXCEPTION
            WHEN SQLSTATE 'THB01' THEN v_out := v_out || (-1)::bigint;
            WHEN SQLSTATE 'THB02' THEN v_out := v_out || (-2)::bigint;
            WHEN SQLSTATE 'THB03' THEN v_out := v_out || (-3)::bigint;
        END;
    END LOOP;
    RETURN v_out;
END
$$;

-- One row of arrays: item i's answer of tokenhub_hold_end is element i of each.
CREATE OR REPLACE FUNCTION tokenhub_hold_end_many(
    p_hold_keys text[], p_charges bigint[], p_statuses text[], p_notes text[], p_now timestamptz,
    OUT o_outcomes text[], OUT o_request_ids text[], OUT o_charged bigint[], OUT o_held bigint[],
    OUT o_owed bigint[], OUT o_diff bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    PERFORM 1 FROM billing_hold WHERE hold_key = ANY (p_hold_keys) ORDER BY id FOR UPDATE;
    PERFORM 1 FROM billing_balance
     WHERE id IN (SELECT balance_id FROM billing_hold WHERE hold_key = ANY (p_hold_keys))
     ORDER BY id FOR UPDATE;
    o_outcomes := '{}'; o_request_ids := '{}'; o_charged := '{}'; o_held := '{}'; o_owed := '{}'; o_diff := '{}';
    FOR i IN 1 .. coalesce(array_length(p_hold_keys, 1), 0) LOOP
        SELECT * INTO r FROM tokenhub_hold_end(p_hold_keys[i], p_charges[i], p_statuses[i], p_notes[i], false, p_now);
        o_outcomes := o_outcomes || r.o_outcome;
        o_request_ids := o_request_ids || r.o_request_id;
        o_charged := o_charged || r.o_charged;
        o_held := o_held || r.o_held;
        o_owed := o_owed || r.o_owed;
        o_diff := o_diff || r.o_diff;
    END LOOP;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS tokenhub_hold_end_many(text[], bigint[], text[], text[], timestamptz);
DROP FUNCTION IF EXISTS tokenhub_hold_open_many(text[], text[], bigint, text, text[], bigint[], bigint[], bigint[], bigint, date, date, bigint, bigint, timestamptz);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("billing", "0011_money_functions")]
    operations = [migrations.RunPython(forwards, backwards)]
