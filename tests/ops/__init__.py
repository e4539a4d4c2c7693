"""Operating the gateway: metrics scraped by a real Prometheus, logs, shutdown, limits."""
