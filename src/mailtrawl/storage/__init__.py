"""Storage: engine and session factories, the declarative base, secrets, migrations."""
