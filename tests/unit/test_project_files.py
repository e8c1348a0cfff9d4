"""Project files that must stay in step: the layer's requirements.txt pins exactly pyproject's runtime dependencies
(boto3 and botocore included, as one consistent pair), every pin is exact, and each function relies on the layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_REQUIREMENT = re.compile(
    r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[(?P<extras>[^\]]*)\])?\s*(?P<spec>[^;#]*?)\s*(?:;.*)?$"
)


def normalise(name: str) -> str:
    """PEP 503 name normalisation."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse(requirement: str) -> tuple[str, str]:
    match = _REQUIREMENT.match(requirement.strip())
    assert match, f"not a requirement: {requirement!r}"
    return normalise(match["name"]), match["spec"].replace(" ", "")


def project_dependencies() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return dict(parse(requirement) for requirement in project["dependencies"])


def requirement_lines(path: Path) -> list[str]:
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            assert not line.startswith("-"), f"{path.name}: options are not allowed: {line}"
            lines.append(line)
    return lines


def layer_requirements() -> dict[str, str]:
    pins = [parse(line) for line in requirement_lines(ROOT / "layers/connect/requirements.txt")]
    names = [name for name, _ in pins]
    assert len(names) == len(set(names)), "a package is listed twice"
    return dict(pins)


def test_the_layer_pins_exactly_the_runtime_dependencies():
    assert layer_requirements() == project_dependencies()


def test_the_layer_ships_boto3_and_botocore_as_one_pinned_pair():
    # aws-xray-sdk pulls botocore into the layer, which comes before the runtime's packages on sys.path: without
    # its own pinned boto3 the runtime's boto3 would run on whatever botocore pip picked
    pins = layer_requirements()
    assert pins["boto3"] == pins["botocore"]


def test_every_pin_is_exact():
    for name, spec in {**project_dependencies(), **layer_requirements()}.items():
        assert re.fullmatch(r"==[0-9][A-Za-z0-9.+!-]*", spec), f"{name}{spec} is not an exact == pin"


def test_every_dev_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for requirement in project["optional-dependencies"]["dev"]:
        name, spec = parse(requirement)
        assert re.fullmatch(r"==[0-9][A-Za-z0-9.+!-]*", spec), f"{name}{spec} is not an exact == pin"


def test_functions_ship_no_dependencies_of_their_own():
    """The layer carries the pins; a function's requirements.txt pulling its own copies would drift from them."""
    for requirements in sorted((ROOT / "functions").glob("*/requirements.txt")):
        assert requirement_lines(requirements) == [], requirements.parent.name


def test_ci_runs_make_test():
    run = (ROOT / ".ci/run").read_text(encoding="utf-8")
    assert re.search(r"^exec make test$", run, re.MULTILINE)
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:", makefile, re.MULTILINE)
