"""The public API itself, whichever edge a call comes from: validation, sizes, the task
store, the task events, and who may call (keys, rate limits, failed-auth throttling)."""
