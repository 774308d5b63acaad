"""billing: the credit ledger (accounts, API keys, prices, holds and captures)."""
