"""The shared database: schema, migrations and the outbox of notices for the faces."""
