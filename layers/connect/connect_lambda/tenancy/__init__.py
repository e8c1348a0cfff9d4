"""Tenants: the one model of an installation, the directory app code reads them from, and the lifecycle that
writes them (installed, uninstalled, enabled, disabled) with its outcomes."""
