"""functions/descriptor: the app descriptor for this deployment, cacheable, with the security settings fixed."""

from __future__ import annotations

import json
import re
import uuid

import boto3
import pytest
from connect_lambda.testing.aws import REGION
from connect_lambda.testing.events import http_event
from connect_lambda.testing.functions import FakeLambdaContext
from connect_lambda.testing.tokens import APP_BASE_URL, APP_KEY


@pytest.fixture
def descriptor(load):
    return load("descriptor")


def get(function, headers: dict[str, str] | None = None) -> dict:
    return function.handle(http_event("GET", "/atlassian-connect.json", headers=headers, body=None))


def test_descriptor_is_json_for_this_deployment(descriptor):
    response = get(descriptor)
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "application/json"
    body = json.loads(response["body"])
    assert body["baseUrl"] == APP_BASE_URL
    assert body["key"] == APP_KEY
    assert body["authentication"] == {"type": "jwt"}
    assert body["lifecycle"] == {
        "installed": "/installed",
        "uninstalled": "/uninstalled",
        "enabled": "/enabled",
        "disabled": "/disabled",
    }
    assert set(body["scopes"]) == {"READ", "ACT_AS_USER"}  # least privilege: no sample route writes
    assert body["apiMigrations"] == {"signed-install": True, "context-qsh": True}
    assert body["modules"]


def test_descriptor_has_an_etag_and_cache_control(descriptor):
    response = get(descriptor)
    etag = response["headers"]["ETag"]
    assert re.fullmatch(r'"[^"]+"', etag)
    cache_control = response["headers"]["Cache-Control"]
    assert "max-age=" in cache_control
    assert "no-store" not in cache_control
    assert get(descriptor)["headers"]["ETag"] == etag  # stable across requests


def test_descriptor_answers_304_when_the_etag_matches(descriptor):
    etag = get(descriptor)["headers"]["ETag"]
    response = get(descriptor, {"If-None-Match": etag})
    assert response["statusCode"] == 304
    assert response["body"] == ""
    assert response["headers"]["ETag"] == etag
    assert "Cache-Control" in response["headers"]


def test_descriptor_answers_200_when_the_etag_differs(descriptor):
    response = get(descriptor, {"if-none-match": '"0123456789abcdef"'})
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["key"] == APP_KEY


def test_descriptor_etag_changes_with_the_deployment(load):
    first = get(load("descriptor"))["headers"]["ETag"]
    second = get(load("descriptor", APP_BASE_URL="https://other.example.com"))["headers"]["ETag"]
    assert first != second


def test_descriptor_through_the_lambda_handler(descriptor):
    event = http_event("GET", "/atlassian-connect.json", body=None)
    response = descriptor.handler(event, FakeLambdaContext())
    assert response["statusCode"] == 200


def test_descriptor_reads_the_base_url_from_the_ssm_parameter_the_template_creates(load):
    name = f"/connect-lambda-test-{uuid.uuid4().hex[:8]}/app-base-url"
    url = "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
    boto3.client("ssm", region_name=REGION).put_parameter(Name=name, Value=url, Type="String")
    descriptor = load("descriptor", APP_BASE_URL="", APP_BASE_URL_PARAMETER=name)
    body = json.loads(get(descriptor)["body"])
    assert body["baseUrl"] == url


def test_descriptor_answers_503_without_a_trace_when_the_parameter_is_missing(load):
    descriptor = load("descriptor", APP_BASE_URL="", APP_BASE_URL_PARAMETER=f"/missing-{uuid.uuid4().hex}")
    response = get(descriptor)
    assert response["statusCode"] == 503
    assert "Traceback" not in response["body"]


def test_a_misconfigured_descriptor_fails_closed_without_a_trace(load):
    response = get(load("descriptor", APP_KEY=""))
    assert response["statusCode"] == 500
    assert json.loads(response["body"]) == {"error": "internal_error"}


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"0123456789abcdef", {etag}'],
    ids=["exact", "weak", "list"],
)
def test_descriptor_answers_304_for_any_matching_if_none_match(descriptor, if_none_match):
    """RFC 9110 §13.1.2: If-None-Match holds a list of entity tags and uses the weak comparison (§8.8.3.2), so a
    ``W/`` tag (what an intermediary that compresses the body sends back) or a list containing ours matches."""
    etag = get(descriptor)["headers"]["ETag"]
    response = get(descriptor, {"If-None-Match": if_none_match.format(etag=etag)})
    assert response["statusCode"] == 304
