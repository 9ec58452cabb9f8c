"""The schema. Statuses are stored as strings, money as integer minor units."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from antaeus.storage.types import BigId, UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

installation = Table(
    "installation",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("installation_id", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

customers = Table(
    "customers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("currency", String(3), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("created_at", UTCDateTime, nullable=False),
    # The customer at the payment provider and the payment method to charge
    # (Stripe's `cus_…`, `pm_…`); NULL: none. Passed with every charge (migration 0009).
    Column("provider_customer_id", String(255), nullable=True),
    Column("provider_payment_method_id", String(255), nullable=True),
    # the customer's credit (issue 21), in minor units of its currency; every change
    # of it is a row of credit_entries
    Column("credit_minor", BigInteger, nullable=False, server_default="0"),
)

OPEN_ATTEMPT_WAITING = "status = 'PENDING' AND run_id IS NULL AND attempt_open_since IS NOT NULL"

invoices = Table(
    "invoices",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigInteger, ForeignKey("customers.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("status", String(16), nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("attempt_count", Integer, nullable=False, server_default="0"),
    Column("last_failure", String(32), nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # Billing state (see docs/architecture.md). `eligible_at` is next_attempt_at or due_at:
    # when the invoice may next be charged. `run_id` is the open run it is in.
    Column("eligible_at", UTCDateTime, nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    # Which claim holds the lease: an answer is recorded only for the claim it
    # belongs to (a worker whose lease expired may have claimed the row again).
    Column("lease_token", BigInteger, nullable=True),
    # Set while an attempt has no definite outcome (in flight, or unknown):
    # its first send. The next send repeats that attempt's key.
    Column("attempt_open_since", UTCDateTime, nullable=True),
    Column("dunning_count", Integer, nullable=False, server_default="0"),
    Column("unknown_repeats", Integer, nullable=False, server_default="0"),
    Column("run_unknown_since", UTCDateTime, nullable=True),
    # Sends of the open attempt that may have reached the provider (meaningful
    # while attempt_open_since is set). A send the provider proved did nothing
    # (401, 429, 409 in use, no connection) is taken back.
    Column("attempt_sends", Integer, nullable=False, server_default="0"),
    Index("ix_invoices_customer_id_id", "customer_id", "id"),
    Index("ix_invoices_status_id", "status", "id"),
    # Partial indexes of work in progress (not history). Those whose predicate fixes
    # the status still lead with it: SQLite, which is never analyzed, takes an
    # equality on an index's first column for the most selective access there is,
    # and would otherwise prefer ix_invoices_status_id (every PENDING invoice).
    Index(
        "ix_invoices_pending_not_in_run",
        "status",
        "eligible_at",
        sqlite_where=text("status = 'PENDING' AND run_id IS NULL"),
        postgresql_where=text("status = 'PENDING' AND run_id IS NULL"),
    ),
    Index(
        "ix_invoices_in_run",
        "eligible_at",
        sqlite_where=text("run_id IS NOT NULL"),
        postgresql_where=text("run_id IS NOT NULL"),
    ),
    # Open attempts (in flight, or unknown and waiting for a repeat): the scheduler's
    # sweep to REVIEW before key retention ends...
    Index(
        "ix_invoices_open_attempt",
        "status",
        "attempt_open_since",
        sqlite_where=text("attempt_open_since IS NOT NULL"),
        postgresql_where=text("attempt_open_since IS NOT NULL"),
    ),
    # ...and those waiting for their repeat, not in a run: its probe for repeats to
    # run in `external` mode (run_id is a column so that SQLite counts it as a
    # second equality and prefers this to ix_invoices_pending_not_in_run).
    Index(
        "ix_invoices_open_attempt_waiting",
        "status",
        "run_id",
        "eligible_at",
        sqlite_where=text(OPEN_ATTEMPT_WAITING),
        postgresql_where=text(OPEN_ATTEMPT_WAITING),
    ),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime, nullable=True),
    # read | write (migration 0013; tokens from before are write)
    Column("scope", String(16), nullable=False, server_default="write"),
    CheckConstraint("scope IN ('read', 'write')", name="scope"),
)

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("scope", String(100), nullable=False),
    Column("key", String(255), nullable=False),
    Column("request_hash", String(64), nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", Text, nullable=False),
    # the answer's own headers (Location), a JSON object; NULL: stored before 0014
    Column("response_headers", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    UniqueConstraint("scope", "key"),
    Index("ix_idempotency_keys_created_at", "created_at"),  # the retention sweep
)

charge_attempts = Table(
    "charge_attempts",
    metadata,
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), primary_key=True),
    Column("number", Integer, primary_key=True),
    Column("idempotency_key", String(255), nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", String(32), nullable=True),
    Column("charge_id", String(255), nullable=True),
    Column("sends", Integer, nullable=False, server_default="1"),
    # the provider's decline code of a `card_declined` outcome (migration 0009)
    Column("decline_code", String(255), nullable=True),
    # The provider references the attempt was sent with (the customer's at its first
    # send); its repeats, reconciliation and the audit use these, never the customer's
    # current ones. `references_recorded` NULL: written before they were kept
    # (migration 0011), so what was sent is not known.
    Column("provider_customer_id", String(255), nullable=True),
    Column("provider_payment_method_id", String(255), nullable=True),
    Column("references_recorded", Boolean, nullable=True),
)

#: Every answer an attempt got, in order (the attempt row keeps only the last).
charge_attempt_answers = Table(
    "charge_attempt_answers",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("invoice_id", BigInteger, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("run_id", BigInteger, nullable=True),
    Column("outcome", String(32), nullable=False),
    Column("charge_id", String(255), nullable=True),
    Column("answered_at", UTCDateTime, nullable=False),
    Index("ix_charge_attempt_answers_invoice_id_attempt", "invoice_id", "attempt"),
)

billing_runs = Table(
    "billing_runs",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("trigger", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("completed_at", UTCDateTime, nullable=True),
    Index("ix_billing_runs_status_id", "status", "id"),
)

run_invoices = Table(
    "run_invoices",
    metadata,
    Column("run_id", BigInteger, ForeignKey("billing_runs.id"), primary_key=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), primary_key=True),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("outcome", String(16), nullable=True),
    Column("finished_at", UTCDateTime, nullable=True),
    Index(
        "ix_run_invoices_open",
        "run_id",
        "invoice_id",
        sqlite_where=text("outcome IS NULL"),
        postgresql_where=text("outcome IS NULL"),
    ),
    # An invoice's open memberships (void): the primary key leads with run_id.
    Index(
        "ix_run_invoices_open_invoice_id",
        "invoice_id",
        sqlite_where=text("outcome IS NULL"),
        postgresql_where=text("outcome IS NULL"),
    ),
)

#: The outbox: every event is written in the same transaction as its cause.
events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("type", String(64), nullable=False),
    Column("invoice_id", BigInteger, nullable=True),
    Column("run_id", BigInteger, nullable=True),
    Column("payload", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # when the relay made its deliveries (NULL: not yet); see event_deliveries
    Column("fanned_out_at", UTCDateTime, nullable=True),
    # PostgreSQL: the writing transaction's id, a server default (migration 0012:
    # `pg_current_xact_id()::text::bigint`); the events list answers only events of
    # transactions ended before every open one, in (coalesce(xact_id, 0), id) order
    # (indexes ix_events_xact_id_id, ix_events_type_xact_id_id and
    # ix_events_invoice_id_xact_id_id, PostgreSQL only).
    # NULL on SQLite (one writer at a time: ids commit in order) and on older rows.
    Column("xact_id", BigInteger, nullable=True),
    Index(
        "ix_events_not_fanned_out_id",
        "id",
        sqlite_where=text("fanned_out_at IS NULL"),
        postgresql_where=text("fanned_out_at IS NULL"),
    ),
    # GET /rest/v1/events?type=, ?invoiceId= (SQLite; on PostgreSQL migration 0012 puts
    # (type | invoice_id, coalesce(xact_id, 0), id) in their place)
    Index("ix_events_type_id", "type", "id").ddl_if(dialect="sqlite"),
    Index("ix_events_invoice_id_id", "invoice_id", "id").ddl_if(dialect="sqlite"),
    Index("ix_events_created_at", "created_at"),  # pruning
)

#: What reconciliation asked the provider about an attempt in REVIEW and what it
#: answered (protocol 1.1, `find_charge`), and what became of the invoice. The
#: same answer asked again bumps `asks` and `last_asked_at` instead of a new row.
reconciliations = Table(
    "reconciliations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("idempotency_key", String(255), nullable=False),
    # what the provider said: charged, not_charged, cannot_tell
    Column("result", String(16), nullable=False),
    Column("charge_id", String(255), nullable=True),
    Column("detail", Text, nullable=False),  # what was asked and answered, for a person
    # what it led to: paid, pending, review, deferred, superseded
    Column("outcome", String(16), nullable=False),
    Column("asked_at", UTCDateTime, nullable=False),
    Column("last_asked_at", UTCDateTime, nullable=False),
    Column("asks", Integer, nullable=False, server_default="1"),
    Index("ix_reconciliations_invoice_id_attempt", "invoice_id", "attempt"),
)

#: What people did to invoices (retry, resolve, void), with who and why.
invoice_actions = Table(
    "invoice_actions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(100), nullable=False),
    Column("note", Text, nullable=True),
    Column("charge_id", String(255), nullable=True),
    Column("from_status", String(16), nullable=False),
    Column("to_status", String(16), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_invoice_actions_invoice_id", "invoice_id"),
)

#: One row: whether charging is paused everywhere, and why.
charging_state = Table(
    "charging_state",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("paused_reason", Text, nullable=True),
    Column("paused_since", UTCDateTime, nullable=True),
    Column("updated_at", UTCDateTime, nullable=False),
)

#: Where events go: webhook endpoints (the API manages them) and the AMQP broker
#: (one row, made by a relay that has ANTAEUS_AMQP_URL). An event is delivered to
#: the destinations that existed when it was written and that take its type.
event_destinations = Table(
    "event_destinations",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # webhook | amqp
    Column("url", String(2048), nullable=False),  # for amqp: without its password
    Column("event_types", Text, nullable=True),  # JSON list; NULL: every type
    Column("secret", String(128), nullable=True),  # webhooks: whsec_..., signs each delivery
    # enabled | disabled (a webhook failing for days) | retired (the broker, while no
    # relay has ANTAEUS_AMQP_URL) | deleted
    Column("status", String(16), nullable=False),
    Column("failing_since", UTCDateTime, nullable=True),  # the first failure since a success
    Column("disabled_at", UTCDateTime, nullable=True),  # or retired at
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # takes the events written from this moment on (NULL: since created_at)
    Column("events_since", UTCDateTime, nullable=True),
)

#: One event to one destination: pending until delivered (at least once).
event_deliveries = Table(
    "event_deliveries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("event_id", BigInteger, ForeignKey("events.id", ondelete="CASCADE"), nullable=False),
    Column(
        "destination_id",
        BigInteger,
        ForeignKey("event_destinations.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("tries", Integer, nullable=False, server_default="0"),
    Column("next_try_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    # a relay that claimed it: next_try_at is then the end of its lease
    Column("lease_owner", String(64), nullable=True),
    Column("last_error", Text, nullable=True),
    UniqueConstraint("event_id", "destination_id"),
    # What is due: only undelivered rows.
    Index(
        "ix_event_deliveries_pending_next_try_at",
        "next_try_at",
        sqlite_where=text("delivered_at IS NULL"),
        postgresql_where=text("delivered_at IS NULL"),
    ),
    Index("ix_event_deliveries_destination_id", "destination_id"),
)

#: Every try of a delivery (the webhooks API and dashboard show them).
delivery_tries = Table(
    "delivery_tries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("destination_id", BigInteger, nullable=False),
    Column("event_id", BigInteger, nullable=False),
    Column("tried_at", UTCDateTime, nullable=False),
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Column("ok", Integer, nullable=False),  # 1 delivered, 0 failed
    Index("ix_delivery_tries_destination_id_id", "destination_id", "id"),
    Index("ix_delivery_tries_event_id", "event_id"),
)

#: Signed-in dashboard browsers (the cookie's random id is stored only as its SHA-256).
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_name", String(100), nullable=False),
    # the SHA-256 of the token that signed in: the session lives only while that very
    # token is active (migration 0013; NULL, a session from before, signs nobody in)
    Column("token_hash", String(64), nullable=True),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Index("ix_dashboard_sessions_expires_at", "expires_at"),
)

#: Plans (issue 21): a price for one unit and one period, and its interval. A plan's
#: price and interval never change; `archived_at` set: no new subscription to it.
plans = Table(
    "plans",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("code", String(64), nullable=False, unique=True),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("interval", String(8), nullable=False),  # day | week | month | year
    Column("interval_count", Integer, nullable=False),
    Column("trial_days", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("archived_at", UTCDateTime, nullable=True),
    CheckConstraint("amount_minor >= 0", name="amount_minor"),
    CheckConstraint("interval IN ('day', 'week', 'month', 'year')", name="interval"),
)

#: Subscriptions (issue 21). Every date is a local date in the customer's time zone.
#: `periods_from`: where the current plan's periods are counted from (NULL: the
#: billing start); `next_period_start`: the first period not yet billed (NULL: none
#: billed yet); `next_due_at`: when that period falls due (NULL: nothing left to
#: bill), so that the generator finds the due ones with one indexed query. The
#: generator (a later step) writes them back after billing, in its transaction.
subscriptions = Table(
    "subscriptions",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigInteger, ForeignKey("customers.id"), nullable=False),
    Column("plan_id", BigInteger, ForeignKey("plans.id"), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("billing_anchor", String(16), nullable=False),  # calendar | anniversary
    Column("start_date", Date, nullable=False),
    Column("trial_end_date", Date, nullable=True),
    Column("cancel_at", Date, nullable=True),  # the date it ends (a cancel made)
    Column("canceled_at", UTCDateTime, nullable=True),  # the instant the cancel was made
    # a `period_end` change: plan and quantity for periods from the effective date on
    Column("pending_plan_id", BigInteger, ForeignKey("plans.id"), nullable=True),
    Column("pending_quantity", Integer, nullable=True),
    Column("pending_effective_date", Date, nullable=True),
    Column("periods_from", Date, nullable=True),
    Column("next_period_start", Date, nullable=True),
    Column("next_due_at", UTCDateTime, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # the local dates at whose first instant `subscription.trial_will_end` and
    # `subscription.canceled` are due (NULL once told, or nothing to tell)
    Column("trial_notice_on", Date, nullable=True),
    Column("cancel_notice_on", Date, nullable=True),
    CheckConstraint("quantity >= 1", name="quantity"),
    CheckConstraint("billing_anchor IN ('calendar', 'anniversary')", name="billing_anchor"),
    Index("ix_subscriptions_customer_id_id", "customer_id", "id"),
    Index("ix_subscriptions_plan_id_id", "plan_id", "id"),
    # the generator's query: the subscriptions due by now
    Index(
        "ix_subscriptions_next_due_at",
        "next_due_at",
        sqlite_where=text("next_due_at IS NOT NULL"),
        postgresql_where=text("next_due_at IS NOT NULL"),
    ),
    Index(
        "ix_subscriptions_trial_notice_on",
        "trial_notice_on",
        sqlite_where=text("trial_notice_on IS NOT NULL"),
        postgresql_where=text("trial_notice_on IS NOT NULL"),
    ),
    Index(
        "ix_subscriptions_cancel_notice_on",
        "cancel_notice_on",
        sqlite_where=text("cancel_notice_on IS NOT NULL"),
        postgresql_where=text("cancel_notice_on IS NOT NULL"),
    ),
)

#: A change or cancel made `now` (issue 21): what its lines and credit entries name.
subscription_changes = Table(
    "subscription_changes",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("subscription_id", BigInteger, ForeignKey("subscriptions.id"), nullable=False),
    Column("kind", String(16), nullable=False),  # change | cancel
    Column("from_plan_id", BigInteger, nullable=False),
    Column("from_quantity", Integer, nullable=False),
    Column("to_plan_id", BigInteger, nullable=True),
    Column("to_quantity", Integer, nullable=True),
    Column("effective_date", Date, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_subscription_changes_subscription_id_id", "subscription_id", "id"),
)

#: What an invoice is made of; the lines' amounts sum to the invoice's. A
#: (subscription, period start) has one `subscription` line, ever (the unique
#: index, not a read before a write, keeps a period from being billed twice).
invoice_lines = Table(
    "invoice_lines",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("invoice_id", BigInteger, ForeignKey("invoices.id"), nullable=False),
    # subscription | proration | credit | balance | manual (an open set)
    Column("kind", String(32), nullable=False),
    Column("description", String(500), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("subscription_id", BigInteger, nullable=True),
    Column("plan_id", BigInteger, nullable=True),
    Column("change_id", BigInteger, nullable=True),
    Column("period_start", Date, nullable=True),
    Column("period_end", Date, nullable=True),
    Column("quantity", Integer, nullable=True),
    Index("ix_invoice_lines_invoice_id", "invoice_id"),
    Index(
        "uq_invoice_lines_subscription_period",
        "subscription_id",
        "period_start",
        unique=True,
        sqlite_where=text("kind = 'subscription'"),
        postgresql_where=text("kind = 'subscription'"),
    ),
    Index(
        "uq_invoice_lines_change_kind",
        "change_id",
        "kind",
        unique=True,
        sqlite_where=text("change_id IS NOT NULL"),
        postgresql_where=text("change_id IS NOT NULL"),
    ),
    Index(
        "ix_invoice_lines_subscription_id_invoice_id",
        "subscription_id",
        "invoice_id",
        sqlite_where=text("subscription_id IS NOT NULL"),
        postgresql_where=text("subscription_id IS NOT NULL"),
    ),
)

#: Every change of a customer's credit (`customers.credit_minor`), with its sign.
credit_entries = Table(
    "credit_entries",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("customer_id", BigInteger, ForeignKey("customers.id"), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),  # the balance after it
    # change | cancel | invoice | adjustment (an open set)
    Column("reason", String(32), nullable=False),
    Column("subscription_id", BigInteger, nullable=True),
    Column("invoice_id", BigInteger, nullable=True),
    Column("change_id", BigInteger, nullable=True),
    Column("note", Text, nullable=True),
    Column("actor", String(100), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    CheckConstraint("balance_minor >= 0", name="balance_minor"),
    Index("ix_credit_entries_customer_id_id", "customer_id", "id"),
)
