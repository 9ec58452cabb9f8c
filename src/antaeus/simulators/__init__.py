"""What stands in for a payment provider: for tests, demos, benchmarks and the default setup.

Nothing here talks to a real provider; `antaeus.payments` holds the protocol and the
real adapters. `simulated` is the in-process simulated provider (the default,
`ANTAEUS_PAYMENT_PROVIDER=simulated`); `simulator_server` serves it over the
payment-provider protocol (`antaeus provider serve`); `fake_stripe` is a local fake of
the part of Stripe's API the Stripe adapter uses (`antaeus provider serve --stripe`);
`server` is the plumbing the two servers share. A fake never imports the adapter it
checks.
"""
