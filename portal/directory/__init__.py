"""The organisation tree and its persons."""
