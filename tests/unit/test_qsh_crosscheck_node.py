"""Cross-check of the qsh case table against Atlassian's npm ``atlassian-jwt`` 2.0.3 (PROTOCOL.md source NPM-JWT).

tools/node/qsh.js feeds each table URL to the library's ``fromMethodAndUrl`` + ``createCanonicalRequest``.
Node must agree with the table everywhere except the rows that carry ``node_canonical``: the divergences listed in
PROTOCOL.md §2.5 (names sorted by decoded instead of encoded form) and a few more that follow from §2.2.6 (the
path is used raw, while Node's legacy ``url.parse`` rewrites ``\\`` and sometimes escapes characters) and §2.3.3
(only ``jwt`` is excluded, while Node also drops ``__proto__``). For those rows the test asserts that Node gives
exactly the documented other value, so the table stays an accurate record of the divergence.

Needs node and npm; runs ``npm ci`` in tools/node once if node_modules is missing. Without node or npm the tests
are skipped, unless the environment variable CI is set, where they fail instead.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from connect_lambda.errors import MalformedRequestError
from connect_lambda.protocol.qsh import canonical_request

from tests.unit.test_qsh_table import load_cases

NODE_DIR = Path(__file__).resolve().parents[2] / "tools" / "node"
SCRIPT = NODE_DIR / "qsh.js"

CASES = load_cases()
AGREEING = [pytest.param(case, id=case["id"]) for case in CASES if "node_canonical" not in case]
DIVERGING = [pytest.param(case, id=case["id"]) for case in CASES if "node_canonical" in case]

# PROTOCOL.md §2.5 row malformed-percent: Java throws (we raise MalformedRequestError), Node keeps the literal.
MALFORMED_PERCENT = {"method": "GET", "url": "/?q=%zz", "base_path": ""}
MALFORMED_PERCENT_NODE = "GET&/&q=%25zz"

Request = tuple[str, str, str]


def _key(item: dict[str, Any]) -> Request:
    return (item["method"], item["url"], item["base_path"])


def _unavailable(reason: str) -> None:
    if "CI" in os.environ:
        pytest.fail(f"{reason}; CI is set, so the Node cross-check must run")
    pytest.skip(reason)


def _ensure_node_modules(npm: str) -> None:
    # One npm ci even when pytest-xdist starts several workers at once.
    lock_path = Path(tempfile.gettempdir()) / "connect-lambda-tools-node-npm-ci.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (NODE_DIR / "node_modules" / "atlassian-jwt").is_dir():
            return
        result = subprocess.run(
            [npm, "ci", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund", "--loglevel=error"],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            pytest.fail(f"npm ci in {NODE_DIR} failed:\n{result.stdout}\n{result.stderr}")


@pytest.fixture(scope="session")
def node_results() -> dict[Request, dict[str, str]]:
    """What atlassian-jwt computes for every table row and for the malformed-percent input."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node or npm is not on PATH, so the atlassian-jwt cross-check cannot run")
    assert node is not None
    assert npm is not None
    _ensure_node_modules(npm)
    inputs = [{"method": c["method"], "url": c["url"], "base_path": c["base_path"]} for c in CASES]
    inputs.append(MALFORMED_PERCENT)
    completed = subprocess.run(
        [node, str(SCRIPT)],
        input="".join(json.dumps(item) + "\n" for item in inputs),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    outputs = [json.loads(line) for line in completed.stdout.splitlines()]
    assert len(outputs) == len(inputs), completed.stderr
    return {_key(item): output for item, output in zip(inputs, outputs, strict=True)}


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("case", AGREEING)
def test_node_atlassian_jwt_agrees_with_the_table(case: dict[str, Any], node_results) -> None:
    result = node_results[_key(case)]
    assert result.get("canonical") == case["canonical"], result
    assert result["qsh"] == _sha256_hex(case["canonical"])


@pytest.mark.parametrize("case", DIVERGING)
def test_node_atlassian_jwt_gives_the_documented_divergent_value(case: dict[str, Any], node_results) -> None:
    result = node_results[_key(case)]
    assert case["node_canonical"] != case["canonical"]
    assert result.get("canonical") == case["node_canonical"], result
    assert result["qsh"] == _sha256_hex(case["node_canonical"])


def test_every_section_2_5_name_sorting_row_is_marked_as_a_node_divergence() -> None:
    by_id = {case["id"]: case for case in CASES}
    for case_id in (
        "sort-key-encoded-vs-decoded-slash",
        "sort-key-encoded-vs-decoded-brace",
        "sort-key-encoded-vs-decoded-colon",
        "enc-unicode-key",
    ):
        assert "node_canonical" in by_id[case_id], case_id
    for case_id in ("uri-double-trailing-slash", "uri-leading-double-slash", "sort-values-astral-vs-bmp"):
        assert "node_canonical" not in by_id[case_id], f"§2.5 says Node = Java for {case_id}"


def test_node_keeps_a_malformed_percent_escape_literal_where_we_reject_it(node_results) -> None:
    result = node_results[_key(MALFORMED_PERCENT)]
    assert result.get("canonical") == MALFORMED_PERCENT_NODE, result
    with pytest.raises(MalformedRequestError):
        canonical_request(MALFORMED_PERCENT["method"], MALFORMED_PERCENT["url"], MALFORMED_PERCENT["base_path"])
