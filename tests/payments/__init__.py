"""The payment providers: the simulator server, the HTTP adapter, their contract."""
