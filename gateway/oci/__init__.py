"""Pure OCI distribution / Docker registry protocol: no I/O lives here."""
