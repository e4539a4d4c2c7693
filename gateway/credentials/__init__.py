"""Upstream credentials: where they come from (static, Docker config, Vault) and their shape."""
