"""Payment providers: the protocol and its errors, the simulated provider, the HTTP adapter."""
