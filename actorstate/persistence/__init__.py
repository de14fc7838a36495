"""Durable state: the snapshot codec, the SQLite store and the snapshot actor."""
