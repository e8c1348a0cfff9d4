"""The authorizer: verifies the one credential each route declares (connect_apigw.authorizer), before any route code.

Framework code: the policy comes from the app's declaration (``connect_app``); nothing here is the app author's.
"""

from connect_apigw.authorizer import Authorizer
from connect_app import app

authorizer = Authorizer(app)
handler = authorizer.handler
