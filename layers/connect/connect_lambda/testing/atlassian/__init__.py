"""A simulated Atlassian on loopback, for tests and the local stack: every piece the app talks to, honest about
the protocol (each one checks what the real service checks) and counting what it was asked."""
