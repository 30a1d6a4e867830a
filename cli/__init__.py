"""The ``taskledger`` command line: run the system, run the demo, inspect the ledger."""
