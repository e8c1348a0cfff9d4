"""Reading the app's own secrets (the 3LO client secret, an API token) from where AWS keeps them, once per container.

A secret is never configuration: the environment names *where* it is, and the function reads it with Powertools
Parameters, from SSM Parameter Store (a ``SecureString``, decrypted) or Secrets Manager (a name given as
``secretsmanager:<name>`` or as the secret's ARN). The value is held in memory only, by the deployment, and a secret
that cannot be read makes the feature that needs it unavailable (503), never anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connect_lambda.errors import ConfigurationError, DependencyUnavailableError
from connect_lambda.tracing import trace_aws_calls

SECRETS_MANAGER_PREFIX = "secretsmanager:"
_SECRETS_MANAGER_ARN = "arn:aws:secretsmanager:"
MAX_SECRET_LENGTH = 4096


@dataclass(frozen=True, slots=True)
class Secret:
    """A secret value; its text stays out of reprs, logs and errors."""

    value: str = field(repr=False)
    source: str


def is_secrets_manager(name: str) -> bool:
    return name.startswith(SECRETS_MANAGER_PREFIX) or name.startswith(_SECRETS_MANAGER_ARN)


def read_secret(name: str, *, what: str) -> Secret:
    """The secret named ``name``, read now (callers keep it: :class:`~connect_lambda.deployment.Deployment` reads
    each once per container)."""
    trace_aws_calls()
    from aws_lambda_powertools.utilities import parameters  # noqa: PLC0415 - only functions with secrets load it

    try:
        if is_secrets_manager(name):
            value = parameters.get_secret(name.removeprefix(SECRETS_MANAGER_PREFIX), max_age=0)
        else:
            value = parameters.get_parameter(name, decrypt=True, max_age=0)
    except parameters.exceptions.GetParameterError as exc:
        # the message names where, never what: Powertools' own text may quote the AWS error, which carries no value
        raise DependencyUnavailableError(f"could not read the {what} from {name}") from exc
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"the {what} at {name} is empty")
    value = value.strip()
    if len(value) > MAX_SECRET_LENGTH or not value.isprintable():
        raise ConfigurationError(f"the {what} at {name} is not a single line of at most {MAX_SECRET_LENGTH} characters")
    return Secret(value=value, source=name)
