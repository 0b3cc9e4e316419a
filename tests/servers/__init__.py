"""Throw-away servers the tests talk to over real connections (PostgreSQL; later LDAP, IdPs)."""
