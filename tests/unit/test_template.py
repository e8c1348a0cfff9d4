"""template.yaml: the functions exist and import, the routes behind the authorizer are exactly the authorizer's
route table, the authorizer is configured as the design requires, IAM is minimal, the data is protected, and
cfn-lint passes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode.cfn_yaml import loads as cfn_loads
from connect_app import app
from connect_lambda import deployment
from connect_lambda.app.declaration import App, Capability
from connect_lambda.app.template import render_function
from connect_lambda.protocol.descriptor import LIFECYCLE_PATHS
from connect_lambda.stores.tenants import BASE_URL_INDEX, INSTALLED_INDEX, PROJECTED_ATTRIBUTES
from connect_lambda.testing.functions import function_env, load_function

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE_PATH = ROOT / "template.yaml"
# the 3LO routes carry no Atlassian token (a browser arrives from the consent page): their CSRF defence is the
# single-use state bound to the browser's cookie (connect_lambda.grants.consent)
PUBLIC_ROUTES = {
    "POST /installed",
    "POST /uninstalled",
    "GET /atlassian-connect.json",
    "GET /manifest.yml",
    "GET /oauth/authorize",
    "GET /oauth/callback",
}
INSTALLATIONS_ARN = {"Fn::GetAtt": ["InstallationsTable", "Arn"]}
TABLE_ARN = {"Fn::GetAtt": ["TenantsTable", "Arn"]}
KEY_ARN = {"Fn::GetAtt": ["SecretsKey", "Arn"]}
BASE_URL_PARAMETER_ARN = {
    "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${AWS::StackName}/app-base-url"
}


@cache
def _template() -> dict[str, Any]:
    # cfn-lint's loader understands the short tags (!Ref, !Sub, !GetAtt, !If); JSON round trip to plain data
    return json.loads(json.dumps(cfn_loads(TEMPLATE_PATH.read_text(encoding="utf-8"))))


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return _template()


def resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources(template, "AWS::Serverless::Function")


def function_dir(resource: dict[str, Any]) -> Path:
    return ROOT / resource["Properties"]["CodeUri"]


def http_routes(template: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(function logical id, route key ``METHOD /path``, behind the authorizer?) for every HttpApi event."""
    for name, resource in functions(template).items():
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] != "HttpApi":
                continue
            props = event["Properties"]
            assert props.get("ApiId") == {"Ref": "ConnectApi"}, f"{name}: route on another API"
            authorizer = (props.get("Auth") or {}).get("Authorizer")
            yield name, f"{props['Method'].upper()} {props['Path']}", authorizer != "NONE"


def statements(resource: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every IAM statement of a function's Policies, with the condition it depends on (``None``: always)."""

    def walk(policy: Any, condition: str | None) -> Iterator[tuple[dict[str, Any], str | None]]:
        if policy == {"Ref": "AWS::NoValue"}:
            return
        if isinstance(policy, dict) and "Fn::If" in policy:
            name, when_true, when_false = policy["Fn::If"]
            yield from walk(when_true, name)
            yield from walk(when_false, f"!{name}")
            return
        assert isinstance(policy, dict), f"only inline statements (no managed policies or templates): {policy!r}"
        assert set(policy) == {"Statement"}, f"only inline statements (no managed policies or templates): {policy!r}"
        for statement in policy["Statement"]:
            yield statement, condition

    for policy in resource["Properties"].get("Policies") or []:
        yield from walk(policy, None)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def grants(resource: dict[str, Any]) -> set[tuple[str, str, str | None]]:
    """(action, resource as JSON, condition) for every allowed action."""
    found = set()
    for statement, condition in statements(resource):
        assert statement["Effect"] == "Allow"
        assert "NotAction" not in statement
        assert "NotResource" not in statement
        for action in as_list(statement["Action"]):
            for target in as_list(statement["Resource"]):
                found.add((action, json.dumps(target, sort_keys=True), condition))
    return found


def res(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


SSM_GRANT = ("ssm:GetParameter", res(BASE_URL_PARAMETER_ARN), "UsesBaseUrlParameter")


# --- functions ------------------------------------------------------------------------------------------------------


def test_every_function_has_an_app_with_a_handler_that_imports(template, monkeypatch):
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert functions(template)
    for name, resource in functions(template).items():
        props = resource["Properties"]
        handler = props.get("Handler", globals_["Handler"])
        module_name, _, attribute = handler.partition(".")
        assert module_name == "app", name
        directory = function_dir(resource)
        assert (directory / "app.py").is_file(), f"{name}: {directory}/app.py is missing"
        module = load_function(directory.name, monkeypatch)
        assert callable(getattr(module, attribute, None)), f"{name}: app.{attribute} is not callable"
    deployment.reset()


def test_the_test_environment_covers_every_variable_the_template_gives_the_functions(template):
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    assert variables - set(function_env()) == set(), "tests/lambdas.py function_env() lacks these"


def test_every_function_uses_the_layer_and_the_architecture_parameter(template):
    globals_ = template["Globals"]["Function"]
    assert globals_["Layers"] == [{"Ref": "ConnectLayer"}, {"Ref": "AppLayer"}]
    assert globals_["Architectures"] == [{"Ref": "Architecture"}]
    for name, resource in functions(template).items():
        assert "Layers" not in resource["Properties"], name
        assert "Architectures" not in resource["Properties"], name


# --- routes ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def authorizer_routes() -> dict[str, Any]:
    """What the authorizer enforces: the policy derived from the app's declaration."""
    return dict(app.policy())


def test_routes_behind_the_authorizer_are_exactly_the_authorizer_route_table(template, authorizer_routes):
    authorized = {route for _, route, behind in http_routes(template) if behind}
    assert authorized - set(authorizer_routes) == set(), "template routes the authorizer would deny"
    assert set(authorizer_routes) - authorized == set(), "route table entries the template does not declare"


def test_only_installed_uninstalled_the_descriptor_manifest_and_the_3lo_flow_bypass_the_authorizer(template):
    public = {route for _, route, behind in http_routes(template) if not behind}
    assert public == PUBLIC_ROUTES


def test_route_keys_are_unique(template):
    keys = [route for _, route, _ in http_routes(template)]
    assert len(keys) == len(set(keys))


def test_the_lifecycle_function_serves_exactly_its_route_table(template, monkeypatch):
    lifecycle = load_function("lifecycle", monkeypatch)
    deployment.reset()
    declared = {route for name, route, _ in http_routes(template) if name == "LifecycleFunction"}
    assert declared == set(lifecycle._routes)
    assert declared == {f"POST {path}" for path in LIFECYCLE_PATHS.values()}


def _matches(route_path: str, url_path: str) -> bool:
    pattern = "^" + re.sub(r"\\\{[^}/]+\\\}", "[^/]+", re.escape(route_path)) + "$"
    return re.match(pattern, url_path) is not None


def test_every_descriptor_module_url_is_an_authorized_route(template):
    authorized = [route.split(" ", 1) for _, route, behind in http_routes(template) if behind]
    expected_method = {"webhooks": "POST", "generalPages": "GET"}
    for kind, modules in app.descriptor_modules().items():
        for module in modules:
            path = module["url"].split("?", 1)[0]
            method = expected_method.get(kind, "GET")
            assert any(m == method and _matches(p, path) for m, p in authorized), f"{kind}: {path}"


# --- the authorizer -------------------------------------------------------------------------------------------------


def test_the_authorizer_is_a_request_lambda_authorizer_with_payload_2_simple_responses_and_no_caching(template):
    auth = template["Resources"]["ConnectApi"]["Properties"]["Auth"]
    assert auth["DefaultAuthorizer"] == "ConnectAuthorizer"
    assert set(auth["Authorizers"]) == {"ConnectAuthorizer"}
    authorizer = auth["Authorizers"]["ConnectAuthorizer"]
    assert authorizer["FunctionArn"] == {"Fn::GetAtt": ["AuthorizerFunction", "Arn"]}  # a Lambda (REQUEST) one
    assert "JwtConfiguration" not in authorizer
    assert authorizer["AuthorizerPayloadFormatVersion"] == "2.0"  # a string: 2.0 as a number is not valid
    assert authorizer["EnableSimpleResponses"] is True
    # no identity sources (the token comes as a header or a query parameter) and no result caching
    assert authorizer["Identity"] == {"ReauthorizeEvery": 0}


def test_the_authorizer_function_has_no_routes_of_its_own(template):
    assert not template["Resources"]["AuthorizerFunction"]["Properties"].get("Events")


# --- IAM ------------------------------------------------------------------------------------------------------------


def test_the_authorizer_may_only_read_tenants_and_installations_and_decrypt_secrets(template):
    found = grants(template["Resources"]["AuthorizerFunction"])
    assert found == {
        ("dynamodb:GetItem", res(TABLE_ARN), None),
        ("dynamodb:GetItem", res(INSTALLATIONS_ARN), None),
        ("kms:Decrypt", res(KEY_ARN), None),
        SSM_GRANT,
    }


def test_the_forge_function_may_only_keep_installations_tokens_and_deliveries(template):
    found = grants(template["Resources"]["ForgeFunction"])
    assert found == {
        ("dynamodb:GetItem", res(INSTALLATIONS_ARN), None),
        ("dynamodb:UpdateItem", res(INSTALLATIONS_ARN), None),
        ("kms:Decrypt", res(KEY_ARN), None),
        ("kms:Encrypt", res(KEY_ARN), None),
        *(
            (action, res({"Fn::GetAtt": ["IdempotencyTable", "Arn"]}), None)
            for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
        ),
        SSM_GRANT,
    }
    routes = {route for name, route, behind in http_routes(template) if name == "ForgeFunction" and behind}
    assert routes == {"POST /forge/hello", "POST /forge/events", "POST /forge/scheduled"}


def test_the_lifecycle_function_may_only_write_tenants_keep_token_receipts_and_the_app_settings(template):
    found = grants(template["Resources"]["LifecycleFunction"])
    index = res({"Fn::Sub": "${TenantsTable.Arn}/index/" + BASE_URL_INDEX})
    receipts = res({"Fn::GetAtt": ["IdempotencyTable", "Arn"]})
    settings = res({"Fn::GetAtt": ["AppSettingsTable", "Arn"]})
    assert found == {
        ("dynamodb:GetItem", res(TABLE_ARN), None),
        ("dynamodb:UpdateItem", res(TABLE_ARN), None),
        ("dynamodb:Query", index, None),
        ("kms:Encrypt", res(KEY_ARN), None),
        # the retention of an uninstalled tenant's app settings, and the app's tenant listeners
        ("kms:Decrypt", res(KEY_ARN), None),
        ("dynamodb:GetItem", settings, None),
        ("dynamodb:PutItem", settings, None),
        ("dynamodb:UpdateItem", settings, None),
        ("dynamodb:Query", settings, None),
        # the Forge installation mapping of Connect-on-Forge installs
        ("dynamodb:UpdateItem", res(INSTALLATIONS_ARN), None),
        ("dynamodb:Query", res({"Fn::Sub": "${InstallationsTable.Arn}/index/clientKey-index"}), None),
        ("dynamodb:GetItem", receipts, None),
        ("dynamodb:PutItem", receipts, None),
        ("dynamodb:UpdateItem", receipts, None),
        ("dynamodb:DeleteItem", receipts, None),
        SSM_GRANT,
    }


def test_the_descriptor_function_may_only_read_the_base_url_parameter(template):
    assert grants(template["Resources"]["DescriptorFunction"]) == {SSM_GRANT}


def test_kms_grants_are_bound_to_the_app_key_encryption_context(template):
    for resource in functions(template).values():
        for statement, _ in statements(resource):
            if any(action.startswith("kms:") for action in as_list(statement["Action"])):
                assert statement["Condition"] == {"StringEquals": {"kms:EncryptionContext:appKey": {"Ref": "AppKey"}}}


def test_no_function_policy_has_a_wildcard_action_or_resource(template):
    for name, resource in functions(template).items():
        for statement, _ in statements(resource):
            for action in as_list(statement["Action"]):
                assert "*" not in action, f"{name}: {action}"
            for target in as_list(statement["Resource"]):
                assert target != "*", name
                assert "*" not in json.dumps(target), f"{name}: {target}"


def test_only_the_lifecycle_function_may_write_tenants(template):
    writes = {"dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"}
    for name, resource in functions(template).items():
        tenant_writes = {
            action for action, target, _ in grants(resource) if action in writes and target == res(TABLE_ARN)
        }
        expected = {"dynamodb:UpdateItem"} if name == "LifecycleFunction" else set()
        assert tenant_writes == expected, name


# --- data -----------------------------------------------------------------------------------------------------------


def test_the_tenants_table_is_on_demand_recoverable_encrypted_with_the_key_and_expires_records(template):
    props = template["Resources"]["TenantsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True, "SSEType": "KMS", "KMSMasterKeyId": {"Ref": "SecretsKey"}}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expiresAt", "Enabled": True}
    assert props["KeySchema"] == [{"AttributeName": "clientKey", "KeyType": "HASH"}]
    by_url, installed = props["GlobalSecondaryIndexes"]
    assert by_url["IndexName"] == BASE_URL_INDEX
    assert by_url["KeySchema"] == [{"AttributeName": "baseUrl", "KeyType": "HASH"}]
    assert installed["IndexName"] == INSTALLED_INDEX
    assert installed["KeySchema"] == [
        {"AttributeName": "listing", "KeyType": "HASH"},
        {"AttributeName": "clientKey", "KeyType": "RANGE"},
    ]
    for index in (by_url, installed):
        # every tenant field the directory returns, and never the sealed secret
        assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": list(PROJECTED_ATTRIBUTES)}


def test_the_tenants_table_and_the_key_are_retained(template):
    for name in ("TenantsTable", "SecretsKey"):
        assert template["Resources"][name]["DeletionPolicy"] == "Retain", name
        assert template["Resources"][name]["UpdateReplacePolicy"] == "Retain", name


def test_the_secrets_key_rotates(template):
    props = template["Resources"]["SecretsKey"]["Properties"]
    assert props["EnableKeyRotation"] is True
    assert props["KeySpec"] == "SYMMETRIC_DEFAULT"


def test_the_functions_are_told_the_table_and_the_key(template):
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["TENANTS_TABLE"] == {"Ref": "TenantsTable"}
    assert variables["SECRETS_KEY_ID"] == KEY_ARN


# --- the key policy binds DynamoDB's use of the key to this stack (issue 9, item 6) ---------------------------------

STACK_TAG = "connect-lambda:stack"
TABLE_NAMES = {
    "TenantsTable": {"Fn::Sub": "${AWS::StackName}-tenants"},
    "TokenCacheTable": {"Fn::Sub": "${AWS::StackName}-token-cache"},
    "IdempotencyTable": {"Fn::Sub": "${AWS::StackName}-idempotency"},
    "InstallationsTable": {"Fn::Sub": "${AWS::StackName}-installations"},
    "GrantsTable": {"Fn::Sub": "${AWS::StackName}-grants"},
    "AppSettingsTable": {"Fn::Sub": "${AWS::StackName}-app-settings"},
}
DATA_KEY_ACTIONS = {"kms:Encrypt", "kms:Decrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"}


def key_statements(template: dict[str, Any]) -> list[dict[str, Any]]:
    return template["Resources"]["SecretsKey"]["Properties"]["KeyPolicy"]["Statement"]


def test_every_table_is_named_from_the_stack_with_the_names_the_key_policy_uses(template):
    tables = resources(template, "AWS::DynamoDB::Table")
    assert set(tables) == set(TABLE_NAMES)
    for name, table in tables.items():
        assert table["Properties"]["TableName"] == TABLE_NAMES[name], name


def test_the_account_root_still_administers_the_key_through_iam(template):
    [root] = [statement for statement in key_statements(template) if statement["Principal"] != {"AWS": "*"}]
    assert root["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
    assert root["Action"] == "kms:*"
    assert "Condition" not in root


def test_no_principal_may_use_the_key_through_dynamodb_unless_it_is_a_role_of_this_stack(template):
    """Attack: any principal of the account used the key through DynamoDB (any table, any role)."""
    open_statements = [statement for statement in key_statements(template) if statement["Principal"] == {"AWS": "*"}]
    assert open_statements
    for statement in open_statements:
        assert statement["Effect"] == "Allow"
        conditions = statement["Condition"]
        assert set(conditions) == {"StringEquals"}, "only exact matches: no StringLike, no IfExists"
        equals = conditions["StringEquals"]
        assert equals["kms:CallerAccount"] == {"Ref": "AWS::AccountId"}
        assert equals["kms:ViaService"] == {"Fn::Sub": "dynamodb.${AWS::Region}.${AWS::URLSuffix}"}
        assert equals[f"aws:PrincipalTag/{STACK_TAG}"] == {"Ref": "AWS::StackName"}
        actions = set(as_list(statement["Action"]))
        if actions & DATA_KEY_ACTIONS:
            # a data key only for this stack's tables: the names, never a reference (the tables use the key)
            assert actions == DATA_KEY_ACTIONS
            assert equals["kms:EncryptionContext:aws:dynamodb:tableName"] == list(TABLE_NAMES.values())
        else:
            assert actions == {"kms:DescribeKey", "kms:CreateGrant"}
    granted = {action for statement in open_statements for action in as_list(statement["Action"])}
    assert granted == DATA_KEY_ACTIONS | {"kms:DescribeKey", "kms:CreateGrant"}


def test_every_function_role_carries_the_stack_tag_the_key_policy_admits(template):
    # SAM gives a function's Tags to the execution role it generates (aws/serverless-application-model#1194)
    assert template["Globals"]["Function"]["Tags"][STACK_TAG] == {"Ref": "AWS::StackName"}
    for name, resource in functions(template).items():
        props = resource["Properties"]
        assert "Role" not in props, f"{name}: a role of its own would not carry the stack tag"
        assert STACK_TAG not in (props.get("Tags") or {}), f"{name}: overrides the stack tag"


# --- the API is reached only where it is advertised (issue 9, item 6) ------------------------------------------------


def test_the_execute_api_endpoint_is_disabled_when_a_custom_domain_is_configured(template):
    props = template["Resources"]["ConnectApi"]["Properties"]
    assert props["DisableExecuteApiEndpoint"] == {"Fn::If": ["HasAppBaseUrl", True, False]}
    assert template["Conditions"]["HasAppBaseUrl"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AppBaseUrl"}, ""]}]}


# --- layer, parameters, outputs ---------------------------------------------------------------------------------------


def test_the_layer_is_built_for_python_3_13(template):
    layer = template["Resources"]["ConnectLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Metadata"]["BuildMethod"] == "python3.13"
    assert layer["Properties"]["ContentUri"].rstrip("/") == "layers/connect"
    assert "python3.13" in layer["Properties"]["CompatibleRuntimes"]


def test_the_parameters_exist(template):
    parameters = template["Parameters"]
    assert {"AppKey", "Stage", "AllowedTenantHosts", "Architecture"} <= set(parameters)
    assert parameters["Architecture"]["Default"] == "arm64"
    assert set(parameters["Architecture"]["AllowedValues"]) == {"arm64", "x86_64"}


def test_the_outputs_exist(template):
    assert {"DescriptorUrl", "ApiUrl"} <= set(template["Outputs"])


def test_cfn_lint_passes():
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run(
        [str(cfn_lint), str(TEMPLATE_PATH)], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# Lambda rejects a function whose environment sets one of these (AWS Lambda developer guide, "Defined runtime
# environment variables": reserved names).
LAMBDA_RESERVED_VARIABLES = {
    "_HANDLER",
    "_X_AMZN_TRACE_ID",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE",
    "AWS_LAMBDA_LOG_GROUP_NAME",
    "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API",
    "LAMBDA_TASK_ROOT",
    "LAMBDA_RUNTIME_DIR",
}


def test_no_function_sets_a_reserved_lambda_variable(template):
    variables = set(template["Globals"]["Function"]["Environment"]["Variables"])
    for resource in functions(template).values():
        variables |= set(((resource["Properties"].get("Environment") or {}).get("Variables")) or {})
    assert variables & LAMBDA_RESERVED_VARIABLES == set()


GRANTS_ARN = {"Fn::GetAtt": ["GrantsTable", "Arn"]}
CLIENT_SECRET_READS = {
    (
        "ssm:GetParameter",
        res(
            {
                "Fn::Sub": "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter"
                "${OAuthClientSecretParameter}"
            }
        ),
        "OAuthClientSecretInSsm",
    ),
    ("secretsmanager:GetSecretValue", res({"Ref": "OAuthClientSecretParameter"}), "OAuthClientSecretInSecretsManager"),
}


def test_the_oauth_function_may_only_consume_states_store_grants_seal_and_read_the_client_secret(template):
    found = grants(template["Resources"]["OauthFunction"])
    assert found == {
        ("dynamodb:PutItem", res(GRANTS_ARN), None),
        ("dynamodb:DeleteItem", res(GRANTS_ARN), None),
        ("kms:Encrypt", res(KEY_ARN), None),
        SSM_GRANT,
        *CLIENT_SECRET_READS,
    }
    routes = {route for name, route, behind in http_routes(template) if name == "OauthFunction"}
    assert routes == {"GET /oauth/authorize", "GET /oauth/callback"}


def test_only_functions_that_use_grants_read_the_client_secret_and_nobody_reads_any_other_parameter(template):
    readers = {
        name
        for name, resource in functions(template).items()
        for action, _, _ in grants(resource)
        if action in ("secretsmanager:GetSecretValue",)
    }
    assert readers == {"OauthFunction", "TokenRefresherFunction", "IntegrationFunction"}
    for name, resource in functions(template).items():
        for action, target, condition in grants(resource):
            if action.startswith("ssm:") or action.startswith("secretsmanager:"):
                assert (action, target, condition) in CLIENT_SECRET_READS | {SSM_GRANT}, name


def test_the_refresher_may_rotate_grants_and_query_only_their_due_index(template):
    found = grants(template["Resources"]["TokenRefresherFunction"])
    assert ("dynamodb:UpdateItem", res(GRANTS_ARN), None) in found
    assert ("dynamodb:Query", res({"Fn::Sub": "${GrantsTable.Arn}/index/due-index"}), None) in found
    assert not {action for action, target, _ in found if target == res(GRANTS_ARN)} - {"dynamodb:UpdateItem"}
    assert found >= CLIENT_SECRET_READS


def test_the_grants_table_is_on_demand_recoverable_encrypted_with_the_key_with_a_due_index_and_a_ttl(template):
    props = template["Resources"]["GrantsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"]["KMSMasterKeyId"] == {"Ref": "SecretsKey"}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "ttl", "Enabled": True}
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "due-index"
    assert [key["AttributeName"] for key in index["KeySchema"]] == ["dueBucket", "dueAt"]


def test_a_function_declaring_the_api_token_reads_that_parameter_and_nothing_else(template):
    reports = App(name="t", description="t", scopes=("READ",))
    scripts = reports.function("scripts", description="service-account reports", uses=(Capability.API_TOKEN,))
    block = render_function(reports, reports.functions[scripts.function])
    assert "ReadApiToken" in block
    assert "ApiTokenInSsm" in block
    assert "ApiTokenInSecretsManager" in block
    assert "OAuthClientSecret" not in block
    assert "GrantsTable" not in block
    assert {"ApiTokenInSsm", "ApiTokenInSecretsManager"} <= set(template["Conditions"])
