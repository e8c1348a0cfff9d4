"""One declaration of the app: the authorizer's policy, the descriptor and template.yaml's app functions all come
from it, and adding a route is one declaration plus one handler (proved on a scratch copy of the project)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cfnlint.decode.cfn_yaml import loads as cfn_loads
from connect_app import app
from connect_lambda.app.declaration import App, Capability, Credential
from connect_lambda.app.descriptor import render_descriptor
from connect_lambda.app.template import render_block, updated_template
from connect_lambda.errors import ConfigurationError
from connect_lambda.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = Settings(app_key="com.example.connect-app", app_base_url="https://connect-app.example.com")


def test_template_yaml_holds_exactly_what_the_declaration_generates():
    text = (ROOT / "template.yaml").read_text(encoding="utf-8")
    assert updated_template(text, app) == text, "template.yaml is not current: run `make template`"


def test_the_policy_names_every_declared_route_with_its_credential_and_the_framework_lifecycle_routes():
    policy = app.policy()
    for route in app.routes:
        if route.credential is Credential.NONE:
            assert route.route_key not in policy
        else:
            assert policy[route.route_key].credential is route.credential
    assert policy["POST /enabled"].allow_disabled_tenant
    assert policy["POST /disabled"].allow_disabled_tenant
    assert not any(
        p.allow_disabled_tenant for key, p in policy.items() if key not in ("POST /enabled", "POST /disabled")
    )


def test_the_descriptor_lists_each_declared_module_with_the_deployments_key_and_base_url():
    descriptor = render_descriptor(app, SETTINGS)
    assert descriptor["key"] == SETTINGS.app_key
    assert descriptor["baseUrl"] == SETTINGS.app_base_url
    assert descriptor["scopes"] == list(app.scopes)
    pages = {module["key"]: module for module in descriptor["modules"]["generalPages"]}
    assert pages["hello-page"]["url"] == app.route("hello-page").path
    assert [hook["event"] for hook in descriptor["modules"]["webhooks"]] == ["jira:issue_created"]


def declared() -> App:
    scratch = App(name="scratch", description="scratch app")
    scratch.function("page", description="pages")
    return scratch


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/installed"),
        ("GET", "/atlassian-connect.json"),
        ("GET", "pages/no-slash"),
        ("GET", "/pages/../up"),
        ("GET", "/pages/a b"),
        ("TRACE", "/pages/x"),
    ],
)
def test_a_route_on_a_framework_path_or_an_unplain_path_or_method_is_refused(method, path):
    with pytest.raises(ConfigurationError):
        declared().function("extra", description="x").route("x", method, path, credential=Credential.QSH)


def test_a_route_declared_twice_by_name_or_by_route_key_is_refused():
    scratch = declared()
    pages = scratch.function("pages_two", description="more pages")
    pages.page("one", "/pages/one", title="One", location="system.top.navigation.bar")
    with pytest.raises(ConfigurationError):
        pages.page("one", "/pages/other", title="One", location="system.top.navigation.bar")
    with pytest.raises(ConfigurationError):
        pages.page("two", "/pages/one", title="Two", location="system.top.navigation.bar")


def test_each_capability_gives_its_function_exactly_its_table_and_kms_only_under_the_app_key_context():
    scratch = App(name="scratch", description="scratch app")
    scratch.function("reader", description="reads tenants", uses=[Capability.TENANTS])
    scratch.function("plain", description="uses nothing")
    resources = json.loads(json.dumps(cfn_loads("Resources:\n" + render_block(scratch) + "\n")))["Resources"]
    reader = json.dumps(resources["ReaderFunction"]["Properties"]["Policies"])
    assert '["TenantsTable", "Arn"]' in reader
    assert "kms:Decrypt" in reader
    assert '"kms:Encrypt"' not in reader
    assert "kms:EncryptionContext:appKey" in reader
    plain = json.dumps(resources["PlainFunction"]["Properties"]["Policies"])
    assert "dynamodb" not in plain
    assert "kms" not in plain


ADDED_PAGE = """
page.page("report-page", "/pages/report", title="Report", location="system.top.navigation.bar")
"""

ADDED_HANDLER = """

@app.handles("report-page")
def report(caller: Caller) -> Response[str]:
    return page_response(caller, "<p>report</p>")
"""


def test_adding_a_page_is_one_declaration_and_one_handler_and_everything_follows(tmp_path):
    """In a scratch copy: one line in the declaration, one handler, `make template`; the template, the
    authorizer's policy and the descriptor then all name the new page, and nothing else changed."""
    scratch = tmp_path / "project"
    shutil.copytree(ROOT / "layers", scratch / "layers", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "functions", scratch / "functions", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "template.yaml", scratch / "template.yaml")
    declaration = scratch / "layers" / "app" / "connect_app" / "__init__.py"
    declaration.write_text(declaration.read_text() + ADDED_PAGE)
    handler_file = scratch / "functions" / "page" / "app.py"
    source = handler_file.read_text().replace(
        "\n\nhandler = app.lambda_handler", ADDED_HANDLER + "\n\nhandler = app.lambda_handler"
    )
    handler_file.write_text(source)
    before = (scratch / "template.yaml").read_text()

    env = {"PYTHONPATH": f"{scratch / 'layers' / 'connect'}:{scratch / 'layers' / 'app'}", "PATH": "/usr/bin:/bin"}
    generated = subprocess.run(
        [sys.executable, "-m", "connect_lambda.app.template"],
        cwd=scratch,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert generated.returncode == 0, generated.stdout + generated.stderr
    after = (scratch / "template.yaml").read_text()
    assert after != before
    assert 'Path: "/pages/report"' in after
    assert (
        after.replace(
            """        ReportPage:
          Type: HttpApi
          Properties: {ApiId: !Ref ConnectApi, Method: GET, Path: "/pages/report"}
""",
            "",
        )
        == before
    ), "only the new route's event may change"

    probe = (
        "import importlib.util, json\n"
        "from connect_app import app\n"
        "spec = importlib.util.spec_from_file_location('page_app', 'functions/page/app.py')\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)  # binds the handlers: a declared route without one fails here\n"
        "assert callable(module.handler)\n"
        "from connect_lambda.app.descriptor import render_descriptor\n"
        "from connect_lambda.settings import Settings\n"
        "settings = Settings(app_key='k', app_base_url='https://a.example.com')\n"
        "pages = [m['url'] for m in render_descriptor(app, settings)['modules']['generalPages']]\n"
        "print(json.dumps({'policy': app.policy()['GET /pages/report'].credential, 'pages': pages}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=scratch, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"policy": "qsh", "pages": ["/pages/hello", "/pages/report"]}
