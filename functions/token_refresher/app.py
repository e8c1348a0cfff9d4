"""Scheduled (EventBridge): refreshes the user tokens that are due and in use (connect_apigw.refresher)."""

from connect_apigw.refresher import TokenRefresherFunction

refresher = TokenRefresherFunction()
handler = refresher.handler
