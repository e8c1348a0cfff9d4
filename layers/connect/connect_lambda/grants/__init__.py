"""OAuth 2.0 authorization code grants (3LO): the consent flow, the grant store with single-flight rotating refresh,
and the scheduled refresher. Calls as a 3LO user go through the product client (``as_oauth_user``)."""
