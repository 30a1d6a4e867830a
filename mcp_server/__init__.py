"""taskledger's MCP server: durable tasks as MCP tools, the ledger as the MCP task store.

Not named ``mcp`` so it never shadows the SDK. It calls only functions in ``jobs/``.
"""
