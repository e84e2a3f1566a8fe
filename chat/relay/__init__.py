"""Redis: what is live, shared between Parley replicas (``redis_relay.RedisRelay``)."""
