"""The store: SQLite on its own worker thread, a read-only view of a database
for ``doctor`` and ``actorstate sessions``, and the doctor itself."""
