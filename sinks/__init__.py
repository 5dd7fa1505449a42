"""Sinks: ClickHouse writer and the vector store."""
