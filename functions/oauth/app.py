"""``GET /oauth/authorize`` and ``GET /oauth/callback``: the 3LO consent flow (connect_apigw.oauth)."""

from connect_apigw.oauth import OAuthFunction

oauth = OAuthFunction()
handler = oauth.handler
