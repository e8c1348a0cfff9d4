"""Fixtures of the AWS-side tests: one moto mock per module, a fresh KMS key and tenants table per test, the fake
install-key CDN, and function loading with ``deployment`` reset around every test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import boto3
import pytest
from connect_lambda import deployment
from connect_lambda.testing.atlassian.install_keys import FakeInstallKeysCdn
from connect_lambda.testing.atlassian.oauth import FakeAuthorizationServer
from connect_lambda.testing.aws import REGION, AwsWorld, aws_environment, create_secrets_key
from connect_lambda.testing.functions import function_env, load_function
from connect_lambda.testing.tokens import INSTALL_KID, FakeClock, public_pem, rsa_private_key
from moto import mock_aws

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(scope="module")
def aws() -> Iterator[str]:
    """Fake credentials, one moto mock (DynamoDB, KMS, SSM) and one KMS key for the whole module (its ARN).

    Sharing the key is safe: the encryption context binds each ciphertext to its tenant and app key, and each test
    gets a table of its own.
    """
    with aws_environment(), mock_aws():
        yield create_secrets_key(boto3.client("kms", region_name=REGION))


@pytest.fixture(scope="module")
def moto_aws() -> Iterator[None]:
    """Fake credentials and one moto mock for the whole module (the user-token tests build their own tables)."""
    with aws_environment(), mock_aws():
        yield


@pytest.fixture(scope="module")
def oauth_server() -> Iterator[FakeAuthorizationServer]:
    """One loopback authorization server per module; tests reset it through their own ``oauth`` fixture."""
    with FakeAuthorizationServer() as fake:
        yield fake


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(aws: str) -> AwsWorld:
    """A fresh tenants table (from template.yaml) for this test, encrypted with the module's key."""
    return AwsWorld.create(key_arn=aws)


@pytest.fixture(scope="module")
def cdn() -> Iterator[FakeInstallKeysCdn]:
    """The loopback install-key CDN, serving the public half of the 'atlassian' signing key under INSTALL_KID."""
    with FakeInstallKeysCdn() as fake:
        fake.serve_key(f"/{INSTALL_KID}", public_pem(rsa_private_key()))
        yield fake


@pytest.fixture
def lambda_env(world: AwsWorld, cdn: FakeInstallKeysCdn, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The functions' environment for this test's table and key, with install keys from the fake CDN."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return function_env(**world.env, INSTALL_KEYS_URL=cdn.base_url)


@pytest.fixture
def load(lambda_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """``load("authorizer", **env_overrides)``: a function module, freshly imported with this test's env."""

    def _load(name: str, **overrides: str) -> ModuleType:
        return load_function(name, monkeypatch, {**lambda_env, **overrides})

    yield _load
    deployment.reset()
