"""``GET /atlassian-connect.json``: the descriptor rendered from the app's declaration (connect_apigw.descriptor)."""

from connect_apigw.descriptor import DescriptorFunction
from connect_app import app

descriptor = DescriptorFunction(app)
handler = descriptor.handler
