"""Client authentication and authorization: the token service, challenges, real clients."""
