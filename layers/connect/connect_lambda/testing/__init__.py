"""The public test kit: what an app author (and this project) needs to test handlers offline.

* :mod:`~connect_lambda.testing.tokens`: sign a tenant token for a URL, a context token, an install token; build
  lifecycle bodies; keys; an injectable clock. Every credential minted is remembered
  (:mod:`~connect_lambda.testing.credentials`), so a suite can prove none leaks.
* :mod:`~connect_lambda.testing.forge`: Forge invocation tokens (FITs) signed by a test key set.
* :mod:`~connect_lambda.testing.events`: HTTP API (payload 2.0) events, with or without an authorizer context.
* :mod:`~connect_lambda.testing.functions`: a function's handler built from a deployment (no module juggling).
* :mod:`~connect_lambda.testing.aws`: moto-backed tables and key made from template.yaml, call counters.
* :mod:`~connect_lambda.testing.atlassian`: the simulated Atlassian on loopback: install-key CDN, authorization
  servers, product APIs, the Forge JWKS.
* :class:`~connect_lambda.tenancy.directory.InMemoryTenantDirectory`: tenants without AWS.

It ships in the layer but nothing in production imports it; its heavier helpers need the dev dependencies
(pytest, moto, pyyaml).
"""
