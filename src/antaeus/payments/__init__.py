"""Payment providers as production runs them: the protocol and its errors, the factory that
builds the provider the settings choose, the HTTP adapter and the Stripe adapter.

What stands in for a provider (the simulated provider, its HTTP server, the fake Stripe)
lives in `antaeus.simulators`.
"""
