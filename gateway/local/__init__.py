"""The local tier: models that run in-process on CPU with no keys and nothing downloaded."""
