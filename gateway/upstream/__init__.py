"""The registry behind us: routing, the token flow, the HTTP client and the relay."""
