"""Riverbed streaming layer: the Faust app, topic registry, event envelope, Avro codec and CLI."""
