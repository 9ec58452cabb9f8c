"""Prometheus metrics, each defined once. Names: antaeus_<noun>_<unit>.

Several processes under one parent (`serve --workers N`, `worker --processes N
--metrics-port P`) use the Prometheus client's multiprocess mode: the parent
makes a directory of its own and sets `PROMETHEUS_MULTIPROC_DIR` before
prometheus_client is imported, in itself and in its children
(`antaeus.observability.multiprocess`); every process then writes its values
to files there, and the parent serves `registry()`, which adds them up:
counters and histograms over every process that ever wrote (those that exited
included), each gauge by the `multiprocess_mode` chosen beside it. One process
alone keeps the client's ordinary in-memory values.
"""

from __future__ import annotations

import os

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
)

#: the client chose its mode from this when it was imported (just above)
MULTIPROCESS_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None

CHARGES = Counter(
    "antaeus_charges_total",
    "Answers of the payment provider recorded, by outcome",
    ["outcome"],
)
CHARGE_SECONDS = Histogram(
    "antaeus_charge_duration_seconds",
    "Time of one provider call (including waits on Retry-After)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LEASES_LOST = Counter(
    "antaeus_leases_lost_total", "Answers not recorded because the invoice changed hands"
)
ANSWERS_UNRECORDABLE = Counter(
    "antaeus_answers_unrecordable_total",
    "Provider answers that could not be written (left to their lease; repeated with their key)",
)
# Gauges under several processes. None of ours is a per-process share to add up:
# - paused is each worker's view of one shared state (every worker pauses on the
#   same refusal): the maximum over the live processes says "some worker is
#   paused"; a sum would count workers, and a dead worker's last 1 must not stay.
# - the others are readings of the whole database (each relay, the scheduler):
#   the newest reading of a live process; a sum would count the same events once
#   per relay (`worker --processes N` runs N relays).
CHARGING_PAUSED = Gauge(
    "antaeus_charging_paused",
    "1 while this worker has charging paused (provider refused us)",
    multiprocess_mode="livemax",
)
INVOICES_GENERATED = Counter(
    "antaeus_invoices_generated_total",
    "Invoices generated from subscriptions (one per customer and period start, or split)",
)
RUNS_OPENED = Counter("antaeus_runs_opened_total", "Billing runs opened, by trigger", ["trigger"])
INVOICES_TO_REVIEW = Counter(
    "antaeus_invoices_review_total", "Invoices sent to REVIEW by the scheduler (key retention)"
)
INVOICES_NEED_PERSON = Counter(
    "antaeus_invoices_need_person_total",
    "Invoices that became FAILED or REVIEW and wait for a person, by reason (last failure)",
    ["reason"],
)
INVOICE_ACTIONS = Counter(
    "antaeus_invoice_actions_total",
    "People's actions on invoices (retry, resolve, void) that changed them, by action",
    ["action"],
)
RECONCILIATIONS = Counter(
    "antaeus_reconciliations_total",
    "Invoices in REVIEW the provider was asked about, by result: paid, pending (nothing "
    "charged: a new attempt next), review (the provider cannot tell: a person decides), "
    "deferred (nothing charged, too soon after the last send to trust it), superseded "
    "(the invoice changed meanwhile)",
    ["result"],
)
EVENT_DELIVERIES = Counter(
    "antaeus_event_deliveries_total",
    "Tries to deliver an event, by destination kind (webhook, amqp) and result (delivered, failed)",
    ["destination", "result"],
)
EVENTS_PENDING = Gauge(
    "antaeus_events_pending",
    "Deliveries not yet made, plus events not yet fanned out to their destinations",
    multiprocess_mode="livemostrecent",
)
EVENT_DELIVERY_LAG = Gauge(
    "antaeus_event_delivery_lag_seconds",
    "Age of the oldest event still waiting for a delivery to an enabled destination",
    multiprocess_mode="livemostrecent",
)
RELAY_STALLED = Gauge(
    "antaeus_relay_stalled",
    "1 while this process's outbox relay has not completed a round (claim, fan out, "
    "record) for a minute or more: nothing is delivered from here",
    # the parent of several workers: 1 while any live child's relay is stalled
    multiprocess_mode="livemax",
)
LONG_TRANSACTIONS = Counter(
    "antaeus_long_transactions_total",
    "PostgreSQL transactions seen open longer than 60 s by a relay (each counted once): "
    "they hold back GET /rest/v1/events, which lists only what no open transaction precedes",
)
INVOICES = Gauge(
    "antaeus_invoices",
    "Invoices by status (read by the scheduler every 15 s)",
    ["status"],
    multiprocess_mode="livemostrecent",
)
DUE_BACKLOG = Gauge(
    "antaeus_due_backlog",
    "Invoices due now and not yet charged (read by the scheduler every 15 s)",
    multiprocess_mode="livemostrecent",
)
RUN_SECONDS = Histogram(
    "antaeus_run_duration_seconds",
    "From a billing run's opening to its completion",
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400),
)


_registry: CollectorRegistry | None = None


def registry() -> CollectorRegistry:
    """What `/metrics` and `--metrics-port` serve.

    One process: its own metrics (the default registry). In multiprocess mode:
    the sum over every process of the directory (`MultiProcessCollector`), plus
    this process's own process, platform and GC collectors (the parent's: the
    client cannot add those up across processes).
    """
    global _registry
    if MULTIPROCESS_DIR is None:
        return REGISTRY
    if _registry is None:
        from prometheus_client.multiprocess import MultiProcessCollector

        combined = CollectorRegistry()
        # prometheus_client.multiprocess has no annotations
        MultiProcessCollector(combined, MULTIPROCESS_DIR)  # type: ignore[no-untyped-call]
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            combined.register(collector)
        _registry = combined
    return _registry
