#!/usr/bin/env bash
# smoke.sh [DIR] - prove that the environment of scripts/local-env.sh runs `sam local`: a one-function SAM
# app (python3.13, the architecture sam local can run here) built and invoked in DIR (default: a new
# temporary directory), asserting on the printed payload, since `sam local invoke` exits 0 even when the
# function fails. The function also calls a throwaway HTTP server on the docker0 address, as
# host.docker.internal, to check LOCAL_ENV_DOCKER_GATEWAY. Needs `bash scripts/local-env.sh up` first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
dir=${1:-$(mktemp -d "${TMPDIR:-/tmp}/le-smoke.XXXXXX")}
eval "$(bash "$here/../local-env.sh" env)"
: "${LOCAL_ENV_ARCH:?}"
[ -n "${LOCAL_ENV_DOCKER_GATEWAY:-}" ] || { echo "[smoke] no docker daemon: run bash scripts/local-env.sh up" >&2; exit 1; }

mkdir -p "$dir/fn"
cd "$dir"
cat >template.yaml <<EOF
AWSTemplateFormatVersion: '2010-09-09'
Transform: AWS::Serverless-2016-10-31
Parameters:
  HostUrl: {Type: String, Default: ""}
Resources:
  SmokeFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: fn/
      Handler: app.handler
      Runtime: python3.13
      Architectures: [$LOCAL_ENV_ARCH]
      Timeout: 10
      Environment: {Variables: {HOST_URL: !Ref HostUrl}}
EOF
cat >fn/app.py <<'EOF'
import json, os, platform, sys, urllib.request

import boto3


def handler(event, context):
    host = urllib.request.urlopen(os.environ["HOST_URL"], timeout=5).read().decode().strip()
    return {"smoke": event["word"], "python": sys.version.split()[0], "machine": platform.machine(),
            "boto3": boto3.__version__, "host": host, "handler": os.environ.get("_HANDLER")}
EOF
: >fn/requirements.txt
echo '{"word": "local-env-ok"}' >event.json

# a host service on docker0's address (a server on 127.0.0.1 is unreachable from containers)
mkdir -p www && echo host-reached >www/index.txt
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
python3 -m http.server --bind "$LOCAL_ENV_DOCKER_GATEWAY" --directory www "$port" >http.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT

sam build >build.log 2>&1 || { cat build.log; exit 1; }
out=$(sam local invoke SmokeFunction -e event.json --skip-pull-image \
  --add-host host.docker.internal:host-gateway \
  --parameter-overrides "HostUrl=http://host.docker.internal:$port/index.txt" 2>invoke.log) || { cat invoke.log; exit 1; }
echo "[smoke] payload: $out"
python3 - "$out" "$LOCAL_ENV_ARCH" <<'EOF' || { cat "$dir/invoke.log"; exit 1; }
import json, sys
payload, arch = json.loads(sys.argv[1].strip().splitlines()[-1]), sys.argv[2]
want = {"smoke": "local-env-ok", "host": "host-reached", "handler": "app.handler",
        "machine": {"x86_64": "x86_64", "arm64": "aarch64"}[arch]}
bad = {k: payload.get(k) for k, v in want.items() if payload.get(k) != v}
assert not bad and payload["python"].startswith("3.13."), f"unexpected payload fields: {bad or payload}"
EOF
echo "[smoke] ok: sam build + sam local invoke in $dir"
