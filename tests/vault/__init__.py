"""Vault/OpenBao upstream credentials end to end: real OpenBao, registries and gateway."""
