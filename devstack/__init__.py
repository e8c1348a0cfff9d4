"""The local stack: the real SAM CLI (sam local) for the functions, moto as the embedded AWS, and a simulated
Atlassian on the Docker bridge (install-key CDN, OAuth authorization server, product REST API; Forge's key set,
its product API and its event deliveries), built from the public test kit's fakes.

Entry point: ``python -m devstack <command>`` (run, reload, call, logs, reset, watch, invoke, status, down, ...),
which the make targets call: ``make run``, ``make reload``, ``make call GET /pages/hello``, ``make logs``.
"""
