"""connect-lambda: every Atlassian credential, served securely from one serverless stack.

The packages, from the bottom layer up (a lower layer never imports a higher one; ``tests/unit/test_architecture.py``
holds the rule):

* ``errors``, ``settings``, ``http``, ``secrets``, ``tracing``: typed errors, the configuration contract, bounded
  reading of answers, secrets from SSM or Secrets Manager, X-Ray patching.
* ``protocol`` (Connect: qsh, tokens, signed install, the URL rule, signing, the descriptor) and ``forge`` (Forge
  invocation tokens and their keys, events): pure protocol, no AWS.
* ``tenancy``: the tenant model, the directory, the lifecycle and its outcomes.
* ``stores``: what is kept in DynamoDB, sealed with KMS (tenants, installations, user tokens, settings, receipts).
* ``grants``: OAuth 2.0 (3LO) consent, grants and their rotation.
* ``product``: the product client, one session per credential.
* ``app``: the app author's surface (the declaration, the caller, the descriptor, manifest and template renderers).
* ``deployment``: builds each of these on first use from settings and a clock.
* ``testing``: the public test kit (nothing in production imports it).

The HTTP API adapter (event shapes, status codes, Powertools) is ``connect_apigw``, beside this package.
"""
