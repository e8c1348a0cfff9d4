"""Calling a tenant's product: one client, one session per credential, the token exchanges behind them."""
