"""The designs actorstate is compared with, run on the same workloads.

- ``lock_dict``: the sessions' state in a dict, one lock per session (in process);
- ``commit_per_write``: the same, each write committed in its own SQLite transaction;
- ``sdk_server.py``: the Python SDK's ``MCPServer`` with a dict and locks (a process);
- ``node/``: the Node.js server in the article's shape (a process).
"""
