"""Reading template.yaml (with CloudFormation's short tags) for the local stack and the tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cfnlint.decode import decode

from devstack.config import ROOT

TEMPLATE = ROOT / "template.yaml"


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    template, errors = decode(str(path))
    if errors or template is None:
        raise ValueError(f"cannot read {path}: {errors}")
    return dict(template)


def resources_of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {name: res for name, res in template["Resources"].items() if res.get("Type") == kind}


def table_env_vars(template: dict[str, Any]) -> dict[str, str]:
    """Which environment variable names which table: ``{"TENANTS_TABLE": "TenantsTable", ...}``."""
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    found: dict[str, str] = {}
    sections = [template.get("Globals", {}).get("Function", {})]
    sections += [res.get("Properties", {}) for res in resources_of_type(template, "AWS::Serverless::Function").values()]
    for section in sections:
        for name, value in section.get("Environment", {}).get("Variables", {}).items():
            if isinstance(value, dict) and value.get("Ref") in tables:
                found[name] = value["Ref"]
    return found
