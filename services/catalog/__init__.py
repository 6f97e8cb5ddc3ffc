"""catalog: the only service that talks to PostgreSQL."""
