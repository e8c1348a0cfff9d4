"""sam validate, sam build, sam local invoke of every function with its event (make invoke), sam local start-api
end to end (the scenario)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from devstack.config import ACCOUNTS_PATH, LOCAL_3LO, LOCAL_FORGE, LOCAL_TENANT
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
    counts = {"refreshed", "failed", "skipped", "examined"}
    assert set(refreshed) == counts | {f"grants_{count}" for count in counts}, "user tokens, and 3LO grants (local 3LO)"
    assert refreshed["failed"] == refreshed["grants_failed"] == 0

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


def test_the_oauth_function_and_the_integration_answer_their_sample_events_through_sam_local_invoke(
    stack: Stack,
) -> None:
    stack.ensure_tenant()  # the local test tenant, and its user's 3LO grant (make run leaves both)
    authorize = stack.invoke("OauthFunction", "oauth-authorize.json")
    assert authorize["statusCode"] == 302, authorize
    headers = authorize["headers"]
    assert isinstance(headers, dict)
    location = str(headers["Location"])
    assert f"{ACCOUNTS_PATH}/authorize?" in location, "to the simulated consent page"
    assert f"client_id={LOCAL_3LO.client_id}" in location
    assert "state=[redacted]" in location, "make invoke prints no state"
    [cookie] = authorize["cookies"]
    assert str(cookie).startswith("__Host-oauth_state=[redacted]; Path=/;"), "nor the browser's cookie"
    assert "HttpOnly; Secure; SameSite=Lax" in str(cookie)

    refused = stack.invoke("OauthFunction", "oauth-callback.json")
    assert refused["statusCode"] == 400, refused
    assert "Location" not in str(refused["headers"]), "a page, never a redirect"
    assert "text/html" in str(refused["headers"])
    assert "not valid any more" in str(refused["body"]), "a state this app never issued"

    myself = stack.invoke("IntegrationFunction", "integration-myself.json")
    assert myself["statusCode"] == 200, myself
    answer = json.loads(str(myself["body"]))
    assert (answer["via"], answer["accountId"]) == ("oauth-grant", LOCAL_TENANT.account_id), "as the 3LO user"
    revoked = stack.invoke("IntegrationFunction", "integration-grant.json")
    assert (revoked["statusCode"], json.loads(str(revoked["body"]))) == (200, {"revoked": True})
    missing = stack.invoke("IntegrationFunction", "integration-myself.json")
    assert missing["statusCode"] == 403
    assert json.loads(str(missing["body"]))["error"] == "grant_missing"
    stack.ensure_tenant()  # the grant made again, for the tests after this one


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
