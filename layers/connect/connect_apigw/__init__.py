"""API Gateway HTTP API (payload 2.0) adapter: the only code that knows AWS event and response shapes.

Handlers use it to turn an event into a request the library understands, and every library error into an HTTP
answer (in one place, :mod:`connect_apigw.responses`).
"""
