"""Forge Remote: verifying the Forge Invocation Token (FIT) that Forge sends with every call to a remote backend.

``keys`` holds the JWKS key cache (one per container); ``invocation_token`` the verifier and what it yields.
Protocol facts and their sources: FORGE.md §1 (the FIT), §5 (the pyjwt approach), §7 (the checklist).
"""
