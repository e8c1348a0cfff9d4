"""template.yaml's app functions, generated from the app's declaration: ``make template`` (``--check`` in tests).

Each declared function becomes an ``AWS::Serverless::Function`` (code in ``functions/<name>/``) with one HttpApi
event per declared route (behind the authorizer unless the route takes no credential), its own log group, and
exactly the IAM statements its declared capabilities need - nothing for a capability it does not declare, KMS only
under this app's encryption context. The framework's functions (descriptor, lifecycle, authorizer, refreshers)
stay hand-written in the template; only the block between the two markers below is this module's, so a new route
is one declaration, one handler and ``make template``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from connect_lambda.app.declaration import App, Capability, Credential, Function, Route

BEGIN = "  # --- app functions: generated from the app's declaration by `make template`; do not edit by hand ---"
END = "  # --- end of the generated app functions ---"

_KMS_CONDITION = '{StringEquals: {"kms:EncryptionContext:appKey": !Ref AppKey}}'
_TABLES = {
    Capability.TENANTS: ("TenantsTable", ("dynamodb:GetItem",), None),
    Capability.USER_TOKENS: ("TokenCacheTable", ("dynamodb:GetItem", "dynamodb:UpdateItem"), "TOKEN_CACHE_TABLE"),
    Capability.IDEMPOTENCY: (
        "IdempotencyTable",
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
        "IDEMPOTENCY_TABLE",
    ),
    Capability.SETTINGS: (
        "AppSettingsTable",
        ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:DeleteItem", "dynamodb:Query"),
        "APP_SETTINGS_TABLE",
    ),
    Capability.FORGE_TOKENS: (
        "InstallationsTable",
        ("dynamodb:GetItem", "dynamodb:UpdateItem"),
        "INSTALLATIONS_TABLE",
    ),
    Capability.GRANTS: (
        "GrantsTable",
        ("dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"),
        "GRANTS_TABLE",
    ),
}
# secrets a capability reads (condition names and parameter of template.yaml): only the one it needs, where it is
_SECRETS = {
    Capability.GRANTS: ("OAuthClientSecret", "OAuthClientSecretParameter", "ReadOAuthClientSecret"),
    Capability.API_TOKEN: ("ApiToken", "ApiTokenParameter", "ReadApiToken"),
}
_KMS = {
    Capability.TENANTS: ("kms:Decrypt",),
    Capability.USER_TOKENS: ("kms:Decrypt", "kms:Encrypt"),
    Capability.SETTINGS: ("kms:Decrypt", "kms:Encrypt"),
    Capability.FORGE_TOKENS: ("kms:Decrypt", "kms:Encrypt"),
    Capability.GRANTS: ("kms:Decrypt", "kms:Encrypt"),
}
_SSM_PARAMETER = "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${AWS::StackName}/app-base-url"
_SSM_BASE_URL = f"""        - !If
          - UsesBaseUrlParameter
          - Statement:
              - Effect: Allow
                Action: ssm:GetParameter
                Resource: !Sub "{_SSM_PARAMETER}"
          - !Ref AWS::NoValue"""


def _secret_reads(capability: Capability) -> str:
    condition, parameter, sid = _SECRETS[capability]
    ssm = f"arn:${{AWS::Partition}}:ssm:${{AWS::Region}}:${{AWS::AccountId}}:parameter${{{parameter}}}"
    return f"""        - !If
          - {condition}InSsm
          - Statement:
              - Sid: {sid}
                Effect: Allow
                Action: ssm:GetParameter
                Resource: !Sub "{ssm}"
          - !Ref AWS::NoValue
        - !If
          - {condition}InSecretsManager
          - Statement:
              - Sid: {sid}
                Effect: Allow
                Action: secretsmanager:GetSecretValue
                Resource: !Ref {parameter}
          - !Ref AWS::NoValue"""


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[-_]", name))


def _flow(values: Iterable[str]) -> str:
    items = list(values)
    return items[0] if len(items) == 1 else "[" + ", ".join(items) + "]"


def _statements(function: Function) -> list[str]:
    statements: list[str] = []
    for capability in sorted(function.capabilities):
        if capability not in _TABLES:
            continue
        table, actions, _ = _TABLES[capability]
        statements.append(
            f"            - Sid: {_camel(capability.value)}Records\n"
            "              Effect: Allow\n"
            f"              Action: {_flow(actions)}\n"
            f"              Resource: !GetAtt {table}.Arn"
        )
    kms = sorted({action for capability in function.capabilities for action in _KMS.get(capability, ())})
    if kms:
        statements.append(
            "            - Sid: SealedValues\n"
            "              Effect: Allow\n"
            f"              Action: {_flow(kms)}\n"
            "              Resource: !GetAtt SecretsKey.Arn\n"
            f"              Condition: {_KMS_CONDITION}"
        )
    return statements


def _event(route: Route) -> str:
    properties = f'ApiId: !Ref ConnectApi, Method: {route.method}, Path: "{route.path}"'
    if route.credential is Credential.NONE:
        properties += ", Auth: {Authorizer: NONE}"
    return f"        {_camel(route.name)}:\n          Type: HttpApi\n          Properties: {{{properties}}}"


def render_function(app: App, function: Function) -> str:
    logs = function.logical_id.removesuffix("Function") + "Logs"
    lines = [
        f"  {function.logical_id}:",
        "    Type: AWS::Serverless::Function",
        "    Properties:",
        f"      Description: {json.dumps(function.description)}",
        f"      CodeUri: functions/{function.name}/",
    ]
    if function.timeout_seconds != 10:
        lines.append(f"      Timeout: {function.timeout_seconds}")
    if function.memory_mb != 512:
        lines.append(f"      MemorySize: {function.memory_mb}")
    lines += [
        f"      LoggingConfig: {{LogGroup: !Ref {logs}}}",
        "      Environment:",
        "        Variables:",
        f"          POWERTOOLS_SERVICE_NAME: connect-{function.name.replace('_', '-')}",
    ]
    for capability in sorted(function.capabilities):
        table, _, variable = _TABLES.get(capability, ("", (), None))
        if variable:
            lines.append(f"          {variable}: !Ref {table}")
    lines.append("      Policies:")
    statements = _statements(function)
    if statements:
        lines.append("        - Statement:")
        lines += statements
    lines.append(_SSM_BASE_URL)
    lines += [_secret_reads(capability) for capability in sorted(function.capabilities) if capability in _SECRETS]
    routes = app.routes_of(function.name)
    if routes:
        lines.append("      Events:")
        lines += [_event(route) for route in routes]
    lines += [
        "",
        f"  {logs}:",
        "    Type: AWS::Logs::LogGroup",
        "    Properties:",
        "      RetentionInDays: !Ref LogRetentionDays",
    ]
    return "\n".join(lines)


def render_block(app: App) -> str:
    functions = [render_function(app, function) for function in app.functions.values()]
    return "\n".join([BEGIN, "", "\n\n".join(functions), "", END])


def updated_template(text: str, app: App) -> str:
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError("template.yaml has no generated block (its two marker lines are missing)")
    return text[:start] + render_block(app) + text[end + len(END) :]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connect_lambda.app.template", description=__doc__)
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--check", action="store_true", help="exit 1 (with a diff) if the template is not current")
    args = parser.parse_args(argv)
    from connect_app import app  # noqa: PLC0415 - the app's package

    current = args.template.read_text(encoding="utf-8")
    wanted = updated_template(current, app)
    if wanted == current:
        print(f"{args.template}: the app functions are current")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(), wanted.splitlines(), "template.yaml", "generated", lineterm=""
        )
        print("\n".join(diff))
        print(f"{args.template} is not current: run `make template`")
        return 1
    args.template.write_text(wanted, encoding="utf-8")
    print(f"{args.template}: app functions regenerated from the declaration")
    return 0


if __name__ == "__main__":
    sys.exit(main())
