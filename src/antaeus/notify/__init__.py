"""Telling other systems what happened: the outbox relay and its destinations.

Every outcome is written to the `events` outbox in the same transaction as its
cause (domain/events.py builds the payloads). The relay (`relay.py`), in each
`serve` and `worker` process, fans every event out to the destinations that
take it (`event_deliveries`) and delivers each at least once, with backoff:
signed webhooks (`webhooks.py`) and the AMQP broker (`amqp.py`). A destination
that is down delays only its own deliveries.
"""
