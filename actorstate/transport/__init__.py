"""Transports: the MCP tools, the stdio transport and the server that joins them."""
