"""The local loop a developer lives in, through the make targets README shows: make run again and again, a busy
port, a failing step, an AWS build beside the local one, live code and new routes (make reload), make logs.

No test passes or fails on time: the durations a developer cares about are printed (pytest -s shows them)."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import requests
from connect_lambda.testing.atlassian.oauth import TOKEN_PREFIX
from connect_lambda.testing.atlassian.three_legged import TOKEN_PREFIX as THREE_LEGGED_PREFIX

from devstack.config import LOCAL_3LO, LOCAL_TENANT
from devstack.processes import port_open
from tests.docker.conftest import PAGE, Stack, stack_env
from tests.docker.test_sam_local import native_architecture

pytestmark = pytest.mark.docker

BROKEN = 'raise RuntimeError("broken on purpose by a test")'


def lines_of(output: str, prefix: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith(prefix)]


def assert_no_html(output: str) -> None:
    assert "<html" not in output.lower(), "an HTML page was dumped"
    assert "<!doctype" not in output.lower(), "an HTML page was dumped"


def test_make_run_twice_in_a_row_answers_a_signed_request_after_each(first_run: tuple[Stack, str, int]) -> None:
    stack, first, status_after_first = first_run
    assert "[scenario] all steps passed" in first
    forge = [line for line in lines_of(first, "[scenario]") if " Forge: " in line]
    assert len(forge) == 5, first[-6000:]
    assert all(" ok " in line for line in forge), forge
    assert "clientKey=local-test-tenant" in forge[1], "the Forge call knows the Connect tenant"
    assert "INVALID_REMOTE_INVOCATION_ERROR" in forge[3], "the failed delivery was delivered again"
    assert "TIMEOUT_ERROR" in forge[3], "and once more after its answer came too late"
    assert "1 refused (permissions lag), 1 read" in forge[3], "processed once"
    three_legged = [line for line in lines_of(first, "[scenario]") if " 3LO: " in line]
    assert len(three_legged) == 8, first[-6000:]
    assert all(" ok " in line for line in three_legged), three_legged
    assert "Set-Cookie __Host-oauth_state (Path=/; Max-Age=600; HttpOnly; Secure; SameSite=Lax)" in three_legged[0]
    assert "KMS ciphertext only" in three_legged[2], "the grant at rest"
    assert re.search(r"400 an HTML page .*; 0 code exchange", three_legged[3]), "the replayed state refused"
    assert "1 with the user's newest access token" in three_legged[4]
    assert "1 token request(s) (refresh_token), 1 access token among them, 20 answered" in three_legged[5]
    assert "refresh-token reuse: 0 detected, 0 within the interval; 0 more token requests" in three_legged[6]
    assert '403 {"error":"grant_missing"' in three_legged[7]
    assert "the tenant answers (no cache window left)" in first
    [granted] = [line for line in lines_of(first, "[tenant]") if "its user's 3LO grant" in line]
    assert " ok " in granted, granted
    assert status_after_first == 200, "the test tenant answers the moment make run returns"

    second = stack.make("run")
    assert second.returncode == 0, second.stdout[-6000:]
    # answered at once: no cache window after make run returns
    assert stack.get_page().status_code == 200
    assert "already running, reused" in second.stdout, "the second run reuses the running stack"
    assert "starting sam local start-api" not in second.stdout, "nothing changed: start-api is not restarted"
    assert "[scenario] all steps passed" in second.stdout
    assert lines_of(second.stdout, "[stack] ready in")

    called = stack.make("call", "GET", "/pages/hello")
    assert called.returncode == 0, called.stdout
    assert called.stdout.splitlines()[1].startswith("200 OK")
    assert LOCAL_TENANT.client_key in called.stdout
    refused = stack.make("call", "GET", "/pages/hello", "CONTEXT=1")
    assert refused.returncode != 0
    assert "reason=context_qsh_not_allowed" in refused.stdout

    integration = stack.make("call", "GET", "/api/integration/myself", "CONTEXT=1")
    assert integration.returncode == 0, integration.stdout
    assert '"via": "oauth-grant"' in integration.stdout, "make run leaves the test user's 3LO grant made"

    forge = stack.make("call", "POST", "/forge/hello", "FORGE=1")
    assert forge.returncode == 0, forge.stdout
    assert forge.stdout.splitlines()[1].startswith("200 OK")
    assert '"clientKey": "local-test-tenant"' in forge.stdout, "the local tenant stays Connect-on-Forge"
    assert f'"accountId": "{LOCAL_TENANT.account_id}"' in forge.stdout
    assert "eyJ" not in forge.stdout, "no token is printed"
    fit_on_connect = stack.make("call", "GET", "/pages/hello", "FORGE=1")
    assert fit_on_connect.returncode != 0
    assert "leave out FORGE=1" in fit_on_connect.stdout


def test_a_busy_port_fails_make_run_before_anything_starts_and_names_the_program(
    sam_ready: None, stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ports = {"DEVSTACK_API_PORT": "3310", "DEVSTACK_MOTO_PORT": "5311", "DEVSTACK_SIM_PORT": "8401"}
    state = tmp_path_factory.mktemp("busy")
    other = Stack(root=stack.root, state=state, env=stack_env(state, ports, stack.root), events=state / "events")
    holder = subprocess.Popen(
        [sys.executable, "-m", "http.server", "3310", "--bind", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_open("127.0.0.1", 3310):
            assert time.monotonic() < deadline, "the program holding the port did not start"
            time.sleep(0.2)
        run = other.make("run", timeout=600)
    finally:
        holder.terminate()
        holder.wait(timeout=60)
        other.devstack("down", timeout=300)
    assert run.returncode != 0
    [failed] = lines_of(run.stdout, "[stack] FAILED:")
    assert f"port 3310 (sam local start-api, 127.0.0.1) is in use by pid {holder.pid} (" in failed
    assert "http.server 3310" in failed
    assert "DEVSTACK_API_PORT=" in failed
    assert not lines_of(run.stdout, "[scenario]"), "nothing is played against another program"
    assert not list(state.glob("*.pid")), "nothing was started"


def test_a_failing_step_fails_make_run_with_one_line_each_and_reload_brings_the_fix(stack: Stack) -> None:
    page = stack.root / "functions/page/app.py"
    source = page.read_text()
    broken = source.replace('    installed_at = caller.settings.get("installed-at")\n', f"    {BROKEN}\n", 1)
    assert broken != source, "the page handler changed: break it elsewhere"
    page.write_text(broken)
    try:
        run = stack.make("run")
    finally:
        page.write_text(source)
    assert run.returncode != 0, "a failed step must fail make run"
    assert_no_html(run.stdout)
    assert "code reloaded without a restart: PageFunction" in run.stdout
    [page_step] = [line for line in lines_of(run.stdout, "[scenario]") if "iframe page load" in line]
    assert " FAIL " in page_step
    assert re.search(r"FAIL\s+\d+ ms\s+500 \{", page_step), page_step
    assert "reason=request failed unexpectedly (RuntimeError: broken on purpose by a test)" in page_step
    assert [line for line in lines_of(run.stdout, "[tenant]") if " FAIL " in line], "the tenant does not answer"
    [failed] = lines_of(run.stdout, "[stack] FAILED:")
    assert "the scenario and the local test tenant's setup" in failed

    reload = stack.make("reload")
    assert reload.returncode == 0, reload.stdout
    assert "code reloaded without a restart: PageFunction" in reload.stdout
    assert stack.get_page().status_code == 200


def test_make_logs_shows_each_request_with_its_refusal_reason_and_no_token_is_in_any_local_log(stack: Stack) -> None:
    stack.ensure_tenant()
    assert stack.get_page().status_code == 200
    assert stack.get_page(secret="not-the-tenant-secret-at-all-000000").status_code == 403
    logs = stack.make("logs", "FOLLOW=0", "N=400", timeout=120)
    assert logs.returncode == 0, logs.stdout
    route = r"GET /pages/hello\s+route=\"GET /pages/hello\" function=PageFunction"
    assert re.search(rf"403 refused\s+{route}\s+reason=bad_signature", logs.stdout), logs.stdout[-3000:]
    assert re.search(rf"200 ok\s+{route}", logs.stdout)
    raw = stack.make("logs", "FOLLOW=0", "RAW=1", "N=2000", timeout=120)
    assert re.search(r'"GET /pages/hello\?\S*jwt=\[redacted\]\S* HTTP/1.1" 403', raw.stdout), "access lines, filtered"

    # every log, and the stack's own records (the build and the test's signed events/ are neither)
    files = [path for path in [*(stack.state / "logs").rglob("*"), *stack.state.glob("*.json")] if path.is_file()]
    assert any(path.name == "start-api.log" for path in files)
    for path in files:
        text = path.read_text(errors="replace")
        assert "eyJ" not in text, f"a token in {path}"
        assert not re.search(r"jwt=(?!\[redacted\])", text, re.IGNORECASE), f"a jwt= value in {path}"
        assert LOCAL_TENANT.shared_secret not in text, f"the shared secret in {path}"
        assert TOKEN_PREFIX not in text, f"an access token in {path}"
        assert THREE_LEGGED_PREFIX not in text, f"a 3LO code or token in {path}"
        assert LOCAL_3LO.client_secret not in text, f"the 3LO client secret in {path}"
        assert not re.search(r"[?&](?:code|state)=(?!\[redacted\])", text), f"a callback's code or state in {path}"
        assert not re.search(r"__Host-oauth_state=(?!\[redacted\]|;)", text), f"the state cookie in {path}"


def test_an_aws_sam_build_between_two_local_runs_does_not_touch_the_local_stack(stack: Stack) -> None:
    aws_build = stack.root / ".aws-sam" / "build"
    assert not aws_build.exists(), "the local stack never writes where sam build for AWS does"
    built = stack.make("build")  # sam build with the template's defaults: arm64, into .aws-sam/build
    assert built.returncode == 0, built.stdout[-4000:]
    assert native_architecture(aws_build / "ConnectLayer") == "arm64"
    stack.ensure_tenant()
    assert stack.get_page().status_code == 200, "the running stack still runs its own build"

    run = stack.make("run")
    assert run.returncode == 0, run.stdout[-6000:]
    assert "[scenario] all steps passed" in run.stdout
    assert stack.get_page().status_code == 200
    assert native_architecture(stack.state / "build" / "ConnectLayer") == stack.env.get("LOCAL_ENV_ARCH", "x86_64")
    served = (stack.state / "logs" / "start-api.log").read_text()
    assert ".aws-sam" not in served, "start-api never mounts what sam build for AWS produced"


def test_a_new_route_is_served_after_make_reload(stack: Stack) -> None:
    """A route is one line in the app's declaration and a handler: make reload regenerates template.yaml from the
    declaration (make template) and restarts start-api for the new route."""
    declaration, page = stack.root / "layers/app/connect_app/__init__.py", stack.root / "functions/page/app.py"
    template = stack.root / "template.yaml"
    sources = {path: path.read_text() for path in (declaration, page, template)}
    hello = next(line for line in sources[declaration].splitlines(keepends=True) if '"/pages/hello"' in line)
    bye = hello.replace("hello-page", "bye-page").replace("/pages/hello", "/pages/bye")
    stack.ensure_tenant()
    bye_page = PAGE.replace("/pages/hello", "/pages/bye")
    try:
        assert stack.get_page(bye_page).status_code == 403, "not served yet"
        declaration.write_text(sources[declaration].replace(hello, hello + bye, 1))
        handler = "handler = app.lambda_handler\n"
        page.write_text(sources[page].replace(handler, f'app.handles("bye-page")(hello)\n\n{handler}', 1))
        started = time.monotonic()
        reload = stack.make("reload")
        assert reload.returncode == 0, reload.stdout[-4000:]
        assert "routes changed: +GET /pages/bye -> PageFunction" in reload.stdout
        answer = stack.get_page(bye_page)
        print(f"\n[live code] a new route answered {time.monotonic() - started:.1f} s after make reload began")
        assert answer.status_code == 200, answer.text[:300]
        assert LOCAL_TENANT.client_key in answer.text
    finally:
        for path, text in sources.items():
            path.write_text(text)
    assert requests.get(f"{stack.api}/atlassian-connect.json", timeout=120).status_code == 200
