"""Lifecycle callbacks (installed, uninstalled, enabled, disabled): framework code (connect_apigw.lifecycle).

The app reacts to tenant events through the listeners its declaration registers (``@app.on_tenant_event``).
"""

from connect_apigw.lifecycle import LifecycleFunction
from connect_app import app

lifecycle = LifecycleFunction(app)
handler = lifecycle.handler
