"""sam validate, sam build, sam local invoke of every function with its event (make invoke), sam local start-api
end to end (the scenario)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from devstack.config import LOCAL_FORGE, LOCAL_TENANT
from tests.docker.conftest import ROOT, Stack

pytestmark = pytest.mark.docker


def test_sam_validate_lint_accepts_the_template(sam_ready: None) -> None:
    result = subprocess.run(["sam", "validate", "--lint"], cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout + result.stderr


def test_every_function_answers_its_event_through_sam_local_invoke_across_a_whole_lifecycle(stack: Stack) -> None:
    # the order is the protocol's: the tenant must be installed before its tokens can be authorized
    descriptor = stack.invoke("DescriptorFunction", "descriptor.json")
    assert descriptor["statusCode"] == 200
    assert '"signed-install": true' in str(descriptor["body"])

    assert stack.invoke("LifecycleFunction", "lifecycle-installed.json")["statusCode"] == 204

    for route in ("enabled", "webhook", "page", "context-api"):
        allowed = stack.invoke("AuthorizerFunction", f"authorizer-{route}.json")
        assert allowed["isAuthorized"] is True, route
        assert allowed["context"]["clientKey"] == "local-test-tenant"

    assert stack.invoke("LifecycleFunction", "lifecycle-enabled.json")["statusCode"] == 204

    webhook = stack.invoke("WebhookFunction", "webhook.json")
    assert webhook["statusCode"] == 200
    assert "processedAt" in str(webhook["body"])
    assert stack.invoke("WebhookFunction", "webhook.json")["body"] == webhook["body"], "a retried delivery runs once"

    page = stack.invoke("PageFunction", "page.json")
    assert page["statusCode"] == 200
    assert "local-test-tenant" in str(page["body"])

    myself = stack.invoke("ContextApiFunction", "context-api.json")
    assert myself["statusCode"] == 200
    assert "557058:local-test-user" in str(myself["body"]), "the product saw the call as the user"

    refreshed = stack.invoke("TokenRefresherFunction", "token-refresher.json")
    assert set(refreshed) == {"refreshed", "failed", "skipped", "examined"}
    assert refreshed["failed"] == 0

    assert stack.invoke("AuthorizerFunction", "authorizer-disabled.json")["isAuthorized"] is True
    assert stack.invoke("LifecycleFunction", "lifecycle-disabled.json")["statusCode"] == 204
    assert stack.invoke("AuthorizerFunction", "authorizer-page.json")["isAuthorized"] is False, "tenant is disabled"

    assert stack.invoke("LifecycleFunction", "lifecycle-uninstalled.json")["statusCode"] == 204
    assert stack.invoke("AuthorizerFunction", "authorizer-enabled.json")["isAuthorized"] is False, "uninstalled"
    stack.ensure_tenant()


def test_start_api_allows_a_signed_request_and_refuses_forged_and_missing_tokens(stack: Stack) -> None:
    result = stack.devstack("scenario", "--keep-tenant")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "all steps passed" in result.stdout

    descriptor = requests.get(stack.api + "/atlassian-connect.json", timeout=60)
    assert descriptor.status_code == 200
    assert stack.get_page().status_code == 200
    assert stack.get_page(secret="not-the-tenant-secret-at-all-000000").status_code == 403
    assert requests.get(stack.api + "/pages/hello", timeout=60).status_code == 403


def test_the_forge_function_and_the_authorizer_answer_the_forge_sample_events_through_sam_local_invoke(
    stack: Stack,
) -> None:
    stack.ensure_tenant()  # the local test tenant, its install carrying the local Forge installation
    allowed = stack.invoke("AuthorizerFunction", "authorizer-forge-hello.json")
    assert allowed["isAuthorized"] is True, allowed
    assert allowed["context"]["tokenKind"] == "forge"
    assert allowed["context"]["installationId"] == LOCAL_FORGE.installation_id
    assert allowed["context"]["clientKey"] == LOCAL_TENANT.client_key, "mapped by the Connect install"

    hello = stack.invoke("ForgeFunction", "forge-hello.json")
    assert hello["statusCode"] == 200, hello
    answer = json.loads(str(hello["body"]))
    assert answer["myself"]["accountId"] == LOCAL_TENANT.account_id, "the product was called as the user"

    delivered = stack.invoke("ForgeFunction", "forge-events.json")
    assert delivered["statusCode"] == 200, delivered
    assert json.loads(str(delivered["body"]))["issue"]["key"] == "DEMO-1", "read back as the app"
    again = stack.invoke("ForgeFunction", "forge-events.json")
    assert json.loads(str(again["body"])) == json.loads(str(delivered["body"])), "a redelivery is processed once"

    trigger = stack.invoke("ForgeFunction", "forge-scheduled.json")
    assert trigger["statusCode"] == 200, trigger
    assert json.loads(str(trigger["body"])) == {"systemTokenKept": True}


_ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


def native_architecture(layer: Path) -> str | None:
    native = next((layer / "python").glob("cryptography/hazmat/bindings/_rust*.so"))
    return _ELF_MACHINES.get(int.from_bytes(native.read_bytes()[18:20], "little"))


def test_the_local_build_has_every_function_and_the_layer_for_the_local_architecture(stack: Stack) -> None:
    build = stack.state / "build"
    template = (build / "template.yaml").read_text()
    for function in (ROOT / "functions").iterdir():
        if (function / "app.py").exists():
            logical_id = "".join(part.capitalize() for part in function.name.split("_")) + "Function"
            assert (build / logical_id / "app.py").exists(), logical_id
            assert logical_id in template
    layer = build / "ConnectLayer"
    assert (layer / "python" / "connect_lambda" / "protocol" / "tenant_token.py").exists()
    assert (layer / "python" / "connect_apigw" / "requests.py").exists()
    assert native_architecture(layer) == stack.env.get("LOCAL_ENV_ARCH", "x86_64")
