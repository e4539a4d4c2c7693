"""Thin aiohttp handlers: parse, authorize, hand over to the upstream client and relay."""
