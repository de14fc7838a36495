"""The model: session state and its operations, values and limits, messages, the snapshot codec, listing keys.

Pure: no I/O, no event loop. Everything above builds on it.
"""
