"""The local stack: the real SAM CLI (sam local) for the functions, moto as the embedded AWS, and a simulated
Atlassian product on loopback (install-key CDN, OAuth authorization server, product REST API).

Entry point: ``python -m devstack {up,scenario,down,status,resign-events}`` (``make run`` / ``make stop``).
"""
