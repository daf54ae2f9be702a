"""Shared store: SQLAlchemy models, engine/session from a URL, repository functions, migrations."""
