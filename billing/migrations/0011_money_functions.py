"""On PostgreSQL, opening and ending a hold are one server-side function call each, run in
autocommit: one round trip per step, and the tenant's balance row is locked only while the
function runs, never across client round trips (docs/decisions/011-money-path-in-one-round-trip.md).

The rules are those of the SQL in billing/services.py (`_hold_open_sql`, `_end_sql`,
`_late_settle`), step for step and in the same lock order (hold, balance, day spend, month
spend); tests/billing holds both to the same outcomes. SQLite keeps the Python path."""

from django.db import migrations

CREATE = r"""
CREATE OR REPLACE FUNCTION tokenhub_hold_open(
    p_hold_key text, p_request_id text, p_tenant_id bigint, p_kind text, p_model text,
    p_amount bigint, p_floor bigint, p_cap_amount bigint, p_key_id bigint,
    p_day date, p_month date, p_day_cap bigint, p_month_cap bigint, p_now timestamptz
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_balance bigint;
    v_hold bigint;
BEGIN
    UPDATE billing_balance SET held_micros = held_micros + p_amount
     WHERE tenant_id = p_tenant_id AND kind = p_kind AND amount_micros - held_micros >= p_amount
    RETURNING id INTO v_balance;
    IF v_balance IS NULL THEN
        -- an error, not a result: the statement's work is undone with it (nothing is held)
        RAISE EXCEPTION 'hold refused by the balance' USING ERRCODE = 'THB01';
    END IF;
    IF p_day IS NOT NULL THEN
        -- day row first, then month: the one order every writer locks them in
        INSERT INTO billing_keyspend (key_id, period, starts_on, spent_micros, held_micros)
        VALUES (p_key_id, 'day', p_day, 0, 0) ON CONFLICT (key_id, period, starts_on) DO NOTHING;
        UPDATE billing_keyspend SET held_micros = held_micros + p_cap_amount
         WHERE key_id = p_key_id AND period = 'day' AND starts_on = p_day
           AND (p_day_cap IS NULL OR spent_micros + held_micros + p_cap_amount <= p_day_cap);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold refused by the daily cap' USING ERRCODE = 'THB02';
        END IF;
        INSERT INTO billing_keyspend (key_id, period, starts_on, spent_micros, held_micros)
        VALUES (p_key_id, 'month', p_month, 0, 0) ON CONFLICT (key_id, period, starts_on) DO NOTHING;
        UPDATE billing_keyspend SET held_micros = held_micros + p_cap_amount
         WHERE key_id = p_key_id AND period = 'month' AND starts_on = p_month
           AND (p_month_cap IS NULL OR spent_micros + held_micros + p_cap_amount <= p_month_cap);
        IF NOT FOUND THEN
            RAISE EXCEPTION 'hold refused by the monthly cap' USING ERRCODE = 'THB03';
        END IF;
    END IF;
    INSERT INTO billing_hold (hold_key, request_id, balance_id, key_id, model, amount_micros, floor_micros,
        cap_amount_micros, cap_charged_micros, day, month, status, charged_micros, is_reconciled, created_at, renewed_at)
    VALUES (p_hold_key, p_request_id, v_balance, p_key_id, p_model, p_amount, p_floor,
        p_cap_amount, 0, p_day, p_month, 'open', 0, false, p_now, p_now)
    RETURNING id INTO v_hold;
    RETURN v_hold;
END
$$;

-- One row: o_outcome NULL when the hold is unknown or already ended (nothing changed),
-- 'ended' when this call ended it, 'late' for a settle after reconciliation (o_diff <= 0:
-- nothing could be charged). o_held, o_owed and o_diff are for the caller's warnings.
CREATE OR REPLACE FUNCTION tokenhub_hold_end(
    p_hold_key text, p_charge bigint, p_status text, p_note text, p_reconcile boolean, p_now timestamptz,
    OUT o_outcome text, OUT o_request_id text, OUT o_charged bigint, OUT o_held bigint,
    OUT o_owed bigint, OUT o_diff bigint
) LANGUAGE plpgsql AS $$
DECLARE
    h record;
    v_amount bigint;
    v_balance_held bigint;
    v_charge bigint;
    v_after bigint;
    v_cap bigint := 0;
    v_key text;
BEGIN
    SELECT * INTO h FROM billing_hold WHERE hold_key = p_hold_key FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    o_request_id := h.request_id;
    o_held := h.amount_micros;
    IF h.status <> 'open' THEN
        IF NOT (h.is_reconciled AND p_status = 'settled' AND NOT p_reconcile) THEN
            RETURN;
        END IF;
        -- the request's own settle after reconciliation charged its floor: the rest, once
        v_key := 'usage-late:' || h.request_id;
        PERFORM 1 FROM billing_ledgerentry WHERE idempotency_key = v_key;
        IF FOUND THEN
            RETURN;
        END IF;
        o_owed := LEAST(p_charge, h.amount_micros) - h.charged_micros;
        IF o_owed <= 0 THEN
            RETURN;
        END IF;
        SELECT amount_micros, held_micros INTO v_amount, v_balance_held FROM billing_balance WHERE id = h.balance_id FOR UPDATE;
        o_diff := LEAST(o_owed, v_amount - v_balance_held);  -- the reservation is gone: only what is free
        o_outcome := 'late';
        IF o_diff <= 0 THEN
            RETURN;
        END IF;
        v_after := v_amount - o_diff;
        INSERT INTO billing_ledgerentry (balance_id, kind, amount_micros, balance_after_micros, idempotency_key, request_id, note, created_at)
        VALUES (h.balance_id, 'usage', -o_diff, v_after, v_key, h.request_id,
            LEFT('after reconciliation: ' || COALESCE(NULLIF(p_note, ''), h.model), 500), p_now);
        UPDATE billing_balance SET amount_micros = v_after WHERE id = h.balance_id;
        IF h.day IS NOT NULL AND h.key_id IS NOT NULL AND h.amount_micros <> 0 THEN
            v_cap := LEAST(h.cap_amount_micros,
                div(h.cap_amount_micros::numeric * (h.charged_micros + o_diff) + h.amount_micros - 1, h.amount_micros)::bigint
            ) - h.cap_charged_micros;
            IF v_cap > 0 THEN
                UPDATE billing_keyspend SET spent_micros = spent_micros + v_cap
                 WHERE key_id = h.key_id AND period = 'day' AND starts_on = h.day;
                UPDATE billing_keyspend SET spent_micros = spent_micros + v_cap
                 WHERE key_id = h.key_id AND period = 'month' AND starts_on = h.month;
            END IF;
        END IF;
        UPDATE billing_hold SET charged_micros = charged_micros + o_diff, cap_charged_micros = cap_charged_micros + GREATEST(v_cap, 0)
         WHERE id = h.id;
        o_charged := h.charged_micros + o_diff;
        RETURN;
    END IF;
    SELECT amount_micros, held_micros INTO v_amount, v_balance_held FROM billing_balance WHERE id = h.balance_id FOR UPDATE;
    -- never more than was held, never below zero nor below what other requests hold
    v_charge := GREATEST(0, LEAST(p_charge, h.amount_micros, v_amount - (v_balance_held - h.amount_micros)));
    v_after := v_amount - v_charge;
    IF v_charge <> 0 THEN
        INSERT INTO billing_ledgerentry (balance_id, kind, amount_micros, balance_after_micros, idempotency_key, request_id, note, created_at)
        VALUES (h.balance_id, 'usage', -v_charge, v_after, 'usage:' || h.request_id, h.request_id,
            LEFT(COALESCE(NULLIF(p_note, ''), h.model), 500), p_now);
    END IF;
    UPDATE billing_balance SET amount_micros = v_after, held_micros = held_micros - h.amount_micros WHERE id = h.balance_id;
    IF h.day IS NOT NULL AND h.key_id IS NOT NULL THEN
        IF h.amount_micros <> 0 THEN
            v_cap := LEAST(h.cap_amount_micros,
                div(h.cap_amount_micros::numeric * v_charge + h.amount_micros - 1, h.amount_micros)::bigint);
        END IF;
        UPDATE billing_keyspend SET held_micros = held_micros - h.cap_amount_micros, spent_micros = spent_micros + v_cap
         WHERE key_id = h.key_id AND period = 'day' AND starts_on = h.day;
        UPDATE billing_keyspend SET held_micros = held_micros - h.cap_amount_micros, spent_micros = spent_micros + v_cap
         WHERE key_id = h.key_id AND period = 'month' AND starts_on = h.month;
    END IF;
    UPDATE billing_hold SET status = p_status, charged_micros = v_charge, cap_charged_micros = v_cap,
        is_reconciled = p_reconcile, ended_at = p_now
     WHERE id = h.id;
    o_outcome := 'ended';
    o_charged := v_charge;
END
$$;
"""

DROP = """
DROP FUNCTION IF EXISTS tokenhub_hold_end(text, bigint, text, text, boolean, timestamptz);
DROP FUNCTION IF EXISTS tokenhub_hold_open(text, text, bigint, text, text, bigint, bigint, bigint, bigint, date, date, bigint, bigint, timestamptz);
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP)


class Migration(migrations.Migration):
    dependencies = [("billing", "0010_price_per_image_and_second")]
    operations = [migrations.RunPython(forwards, backwards)]
