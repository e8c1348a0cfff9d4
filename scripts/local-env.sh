#!/usr/bin/env bash
# local-env.sh - the local environment `sam local` needs on a Debian 12 machine (as root) that has no
# Docker daemon running and no container registry access (only PyPI and the Debian mirror).
#
#   bash scripts/local-env.sh up       install / start / build whatever is missing (idempotent), print the env
#   bash scripts/local-env.sh env      print `export` lines for a caller:  eval "$(bash scripts/local-env.sh env)"
#   bash scripts/local-env.sh status   one line each: docker daemon, SAM CLI, Lambda base image
#   bash scripts/local-env.sh down     stop what `up` started (dockerd, by its recorded pid)
#   bash scripts/local-env.sh sam ...  run the SAM CLI (installed first if needed) with that environment
#
# State lives in $LOCAL_ENV_DIR (default <repo>/.local, gitignored):
#   docker/          dockerd's data root        dockerd.pid   written by the dockerd that `up` started
#   sam-venv/        SAM CLI (pip)               samhome/      SAM's app dir (__SAM_CLI_APP_DIR)
#   image/           cached debootstrap rootfs   logs/         one log per step
#
# How `sam local` works here: SAM CLI runs functions in the image public.ecr.aws/lambda/python:3.13-<arch>
# and, with --skip-pull-image (or SAM_SKIP_PULL_IMAGE=1), never pulls it. We build an image under that
# name from a debootstrap'ed Debian bookworm + this machine's pyenv CPython 3.13 (in /var/lang) +
# awslambdaric/boto3 from PyPI (in /var/runtime). SAM adds its own bundled aws-lambda-rie on top.
# dockerd runs with --iptables=false --ip-forward=false --ip-masq=false: published ports still work
# (docker-proxy), containers reach the host on docker0's address, and nothing beyond this machine.
# See shared/SAM-LOCAL.md for the investigation behind this.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
STATE=${LOCAL_ENV_DIR:-$REPO_ROOT/.local}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd -P)
LOGS=$STATE/logs
DOCKER_ROOT=$STATE/docker
DOCKERD_PIDFILE=$STATE/dockerd.pid
SAM_VENV=$STATE/sam-venv
SAMHOME=$STATE/samhome
ROOTFS_CACHE=$STATE/image/bookworm-minbase

SAM_VERSION=1.170.0
LAMBDA_PY=3.13                                   # the Lambda runtime: python3.13
PYENV_VERSION_313=3.13.0                         # the pyenv build copied into the image
# What goes into /var/runtime (what `pip install awslambdaric boto3` resolved to on 2026-11-22).
RUNTIME_PACKAGES=(awslambdaric==4.2.2 boto3==1.44.5 botocore==1.44.5)
# Shared libraries the pyenv CPython's extension modules link against (tkinter and curses left out).
ROOTFS_INCLUDE=ca-certificates,libssl3,libffi8,libsqlite3-0,libreadline8,libncursesw6,libbz2-1.0,zlib1g,liblzma5,libuuid1
SAM_PYTHON=${LOCAL_ENV_SAM_PYTHON:-python3}      # runs SAM CLI itself

case $(uname -m) in
  x86_64 | amd64) ARCH=x86_64 ;;
  aarch64 | arm64) ARCH=arm64 ;;
  *) echo "[local-env] unsupported machine architecture $(uname -m) (Lambda has x86_64 and arm64)" >&2; exit 1 ;;
esac
BASE_IMAGE=public.ecr.aws/lambda/python:$LAMBDA_PY-$ARCH

case ":$PATH:" in *:/usr/sbin:*) ;; *) PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin ;; esac   # dockerd, debootstrap

# ---------------------------------------------------------------------------------------------------
# output: one line per step, "[local-env] what ... 12.3 s"; on failure the step's log tail and a hint.
exec 3>&1 4>&2      # the caller's stdout/stderr, for messages while a step's output goes to its log
_step='' _step_log='' _step_hint='' _step_t0=0 _fail_msg=''

now_us() { _now=${EPOCHREALTIME//[!0-9]/}; }
seconds_since() { # $1 = start in microseconds -> "12.3"
  local d
  now_us; d=$(((_now - $1) / 100000))
  printf '%d.%d' $((d / 10)) $((d % 10))
}
step() { # what, log file, what to do if it fails
  _step=$1 _step_log=$2 _step_hint=$3
  now_us; _step_t0=$_now
  if [ -n "$_step_log" ]; then
    mkdir -p "$(dirname "$_step_log")"
    printf '\n=== %s: %s\n' "$(date -Is)" "$_step" >>"$_step_log"
  fi
  printf '[local-env] %s ... ' "$_step" >&3
}
step_done() { printf '%s s%s\n' "$(seconds_since "$_step_t0")" "${1:+ ($1)}" >&3; _step=''; }
step_skip() { printf '%s\n' "$1" >&3; _step=''; }
fail() { _fail_msg=$1; exit 1; }
say() { printf '[local-env] %s\n' "$*" >&3; }

on_exit() {
  local rc=$?
  [ "$rc" -ne 0 ] && [ -n "$_step" ] || return 0
  printf 'FAILED\n' >&3
  {
    [ -n "$_fail_msg" ] && printf '[local-env] %s\n' "$_fail_msg"
    if [ -n "$_step_log" ] && [ -s "$_step_log" ]; then
      printf '[local-env] last lines of %s:\n' "$_step_log"
      tail -n 25 "$_step_log" | sed 's/^/    /'
    fi
    printf '[local-env] %s\n' "$_step_hint"
  } >&4
}
trap on_exit EXIT

with_lock() { # serialise `up` and `down` (fd 9 is closed for the daemons we start)
  exec 9>"$STATE/.lock"
  flock -w 900 9 || { echo "[local-env] another local-env.sh up/down holds $STATE/.lock" >&2; exit 1; }
}

# ---------------------------------------------------------------------------------------------------
# facts
python313_prefix() { # the pyenv CPython 3.13 build (LOCAL_ENV_PYTHON313 = its prefix, to override)
  local p=${LOCAL_ENV_PYTHON313:-}
  [ -n "$p" ] || p=$(pyenv prefix "$PYENV_VERSION_313" 2>/dev/null) || p=''
  [ -n "$p" ] && [ -x "$p/bin/python$LAMBDA_PY" ] && printf '%s\n' "$p"
}
daemon_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }
our_dockerd_pid() { # the pid of the dockerd `up` started, if it still runs
  local pid
  [ -s "$DOCKERD_PIDFILE" ] || return 1
  pid=$(cat "$DOCKERD_PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && printf '%s\n' "$pid"
}
sam_installed_version() {
  [ -x "$SAM_VENV/bin/python" ] && [ -x "$SAM_VENV/bin/sam" ] &&
    "$SAM_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aws-sam-cli"))' 2>/dev/null
}
docker_gateway() { # docker0's IPv4 address (172.17.0.1 by default): where containers reach host services
  ip -4 -o addr show dev docker0 2>/dev/null | awk '{ sub(/\/.*/, "", $4); print $4; exit }'
}
debian_mirror() { # the mirror apt already uses, for debootstrap
  local m=${LOCAL_ENV_DEBIAN_MIRROR:-}
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '/^URIs:/ && $2 !~ /security/ { print $2; exit }') || true
  fi
  if [ -z "$m" ]; then
    m=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\// && $i !~ /security/) { print $i; exit } }') || true
  fi
  printf '%s\n' "${m:-http://deb.debian.org/debian}"
}
image_recipe() { # changes whenever what goes into the base image changes -> `up` rebuilds it
  {
    printf '%s\n' "$ROOTFS_INCLUDE" "${RUNTIME_PACKAGES[@]}" "$PYENV_VERSION_313" "$ARCH"
    declare -f write_runtime_files assemble_rootfs import_image
  } | sha256sum | cut -c1-16
}

# ---------------------------------------------------------------------------------------------------
# up
ensure_packages() {
  local missing=() p
  for p in docker.io debootstrap; do
    [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null)" = installed ] || missing+=("$p")
  done
  step "Debian packages docker.io debootstrap" "$LOGS/apt.log" \
    "Check that the Debian mirror in /etc/apt/sources.list.d is reachable and that no other apt/dpkg holds its lock, then re-run: bash scripts/local-env.sh up"
  if [ ${#missing[@]} -eq 0 ]; then step_skip "already installed"; return; fi
  {
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "${missing[@]}"
  } >>"$_step_log" 2>&1
  step_done "installed ${missing[*]}"
}

clear_stale_container_network() {
  # A dockerd that was killed (or whose data root was another checkout's) leaves its containers' network
  # namespaces mounted under /var/run/docker/netns, each still holding a 172.17.0.x address and a veth on
  # docker0. The next dockerd hands out the same addresses (and the same MACs, derived from them), so requests
  # to a new function container reach a dead one: "No response from invoke container", a 502 for every
  # route. Only when no dockerd runs at all: unmount those namespaces and drop docker0 with its ports;
  # dockerd makes a fresh bridge.
  pgrep -x dockerd >/dev/null && return 0
  local n=0 ns port
  for ns in /var/run/docker/netns/*; do
    [ -e "$ns" ] || continue
    umount -l "$ns" 2>/dev/null || true
    rm -f "$ns" && n=$((n + 1))
  done
  if ip link show docker0 >/dev/null 2>&1; then
    for port in $(ip -o link show master docker0 2>/dev/null | awk -F': ' '{ sub(/@.*/, "", $2); print $2 }'); do
      ip link delete "$port" 2>/dev/null && n=$((n + 1))
    done
    ip link delete docker0 2>/dev/null || true
  fi
  [ "$n" -eq 0 ] || echo "cleared $n stale container network namespace(s)/port(s) left by an earlier dockerd" >>"$_step_log"
}

ensure_dockerd() {
  step "docker daemon" "$LOGS/dockerd.log" \
    "Read the dockerd log above. If another daemon or a stale /var/run/docker.sock is in the way, stop it (bash scripts/local-env.sh status shows what runs), then re-run: bash scripts/local-env.sh up"
  local pid
  if daemon_answers; then
    if pid=$(our_dockerd_pid); then step_skip "already running (pid $pid)"; else step_skip "already answering (not started by local-env; left alone)"; fi
    return
  fi
  local launched
  if launched=$(our_dockerd_pid); then
    : # ours, still starting (or stuck): wait for it below rather than start a second one
  else
    mkdir -p "$DOCKER_ROOT"
    rm -f "$DOCKERD_PIDFILE"
    clear_stale_container_network
    # setsid + nohup: the daemon outlives this script and the caller's terminal; fds 3, 4 and 9 (our
    # stdout/stderr copies and the lock) must not leak into it, or callers waiting on a pipe would hang.
    setsid nohup dockerd --data-root "$DOCKER_ROOT" --pidfile "$DOCKERD_PIDFILE" \
      --iptables=false --ip-forward=false --ip-masq=false \
      </dev/null >>"$_step_log" 2>&1 3>&- 4>&- 9>&- &
    launched=$!
  fi
  for _ in $(seq 1 120); do
    daemon_answers && break
    kill -0 "$launched" 2>/dev/null || fail "dockerd exited during startup"
    sleep 0.5
  done
  daemon_answers || fail "dockerd did not answer within 60 s (pid $launched still runs: stop it with kill $launched)"
  pid=$(our_dockerd_pid) || fail "dockerd answers but did not write $DOCKERD_PIDFILE"
  step_done "pid $pid, engine $(docker info --format '{{.ServerVersion}}')"
}

ensure_sam() {
  step "SAM CLI $SAM_VERSION in ${SAM_VENV#"$REPO_ROOT"/}" "$LOGS/sam-venv.log" \
    "PyPI must be reachable and '$SAM_PYTHON' must be a CPython with the venv module (set LOCAL_ENV_SAM_PYTHON to another); re-run: bash scripts/local-env.sh up"
  local have
  have=$(sam_installed_version) || have=''
  if [ "$have" = "$SAM_VERSION" ]; then step_skip "already installed"; return; fi
  {
    "$SAM_PYTHON" -m venv --clear "$SAM_VENV"
    "$SAM_VENV/bin/pip" install -q --no-input --disable-pip-version-check "aws-sam-cli==$SAM_VERSION"
    "$SAM_VENV/bin/sam" --version
  } >>"$_step_log" 2>&1
  step_done "$("$SAM_VENV/bin/python" --version)"
}

ensure_samhome() {
  step "SAM app dir ${SAMHOME#"$REPO_ROOT"/} (telemetry off, no version check)" "$LOGS/samhome.log" \
    "Check that $SAMHOME is writable; re-run: bash scripts/local-env.sh up"
  mkdir -p "$SAMHOME"
  # lastVersionCheck far in the future (2100-01-01): SAM never asks PyPI for a newer version. It must be a
  # JSON float: SAM reads it with value_type=float, takes an int as missing, checks PyPI and overwrites it.
  local changed
  changed=$("$SAM_VENV/bin/python" - "$SAMHOME/metadata.json" <<'PY' 2>>"$_step_log"
import json, os, sys
path = sys.argv[1]
try:
    with open(path) as f:
        meta = json.load(f)
except (FileNotFoundError, ValueError):
    meta = {}
want = {"telemetryEnabled": False, "lastVersionCheck": 4102444800.0}
if any(json.dumps(meta.get(k)) != json.dumps(v) for k, v in want.items()):
    meta.update(want)
    with open(path + ".tmp", "w") as f:
        json.dump(meta, f, indent=4)
    os.replace(path + ".tmp", path)
    print("written")
PY
)
  if [ -n "$changed" ]; then step_done "metadata.json written"; else step_skip "already set"; fi
}

ensure_rootfs() { # debootstrap'ed bookworm minbase, cached in $ROOTFS_CACHE
  step "Debian bookworm minbase rootfs (debootstrap)" "$LOGS/debootstrap.log" \
    "debootstrap needs the Debian mirror $(debian_mirror) (set LOCAL_ENV_DEBIAN_MIRROR to use another); re-run: bash scripts/local-env.sh up"
  if [ -x "$ROOTFS_CACHE/bin/sh" ] && [ "$(cat "$ROOTFS_CACHE.include" 2>/dev/null)" = "$ROOTFS_INCLUDE" ]; then
    step_skip "cached in ${ROOTFS_CACHE#"$REPO_ROOT"/}"
    return
  fi
  rm -rf "$ROOTFS_CACHE" "$ROOTFS_CACHE.tmp" "$ROOTFS_CACHE.include"
  mkdir -p "$(dirname "$ROOTFS_CACHE")"
  debootstrap --variant=minbase --include="$ROOTFS_INCLUDE" bookworm "$ROOTFS_CACHE.tmp" "$(debian_mirror)" >>"$_step_log" 2>&1
  rm -rf "$ROOTFS_CACHE.tmp"/var/cache/apt/archives/*.deb "$ROOTFS_CACHE.tmp"/var/lib/apt/lists/* \
    "$ROOTFS_CACHE.tmp"/usr/share/doc/* "$ROOTFS_CACHE.tmp"/usr/share/man/* "$ROOTFS_CACHE.tmp"/usr/share/info/*
  mv "$ROOTFS_CACHE.tmp" "$ROOTFS_CACHE"
  printf '%s\n' "$ROOTFS_INCLUDE" >"$ROOTFS_CACHE.include"
  step_done "$(du -sh "$ROOTFS_CACHE" | cut -f1)"
}

write_runtime_files() { # $1 = rootfs: the runtime bootstrap and the image entrypoint
  local root=$1
  # aws-lambda-rie (added by SAM) runs the first of /var/task/bootstrap, /opt/bootstrap, /var/runtime/bootstrap;
  # it exports the handler as _HANDLER.
  cat >"$root/var/runtime/bootstrap" <<EOF
#!/bin/sh
export AWS_EXECUTION_ENV=AWS_Lambda_python$LAMBDA_PY
export PYTHONPATH="/var/task:/opt/python/lib/python$LAMBDA_PY/site-packages:/opt/python:/var/runtime\${PYTHONPATH:+:\$PYTHONPATH}"
exec /var/lang/bin/python$LAMBDA_PY -m awslambdaric "\${_HANDLER:-\$AWS_LAMBDA_FUNCTION_HANDLER}"
EOF
  # The official images' entrypoint (SAM does not use it: it starts /var/rapid/aws-lambda-rie itself).
  cat >"$root/lambda-entrypoint.sh" <<'EOF'
#!/bin/sh
if [ $# -ne 1 ]; then echo "entrypoint requires the handler name to be the first argument" >&2; exit 142; fi
export _HANDLER="$1"
if [ -z "${AWS_LAMBDA_RUNTIME_API:-}" ] && [ -x /usr/local/bin/aws-lambda-rie ]; then
  exec /usr/local/bin/aws-lambda-rie /var/runtime/bootstrap
fi
exec /var/runtime/bootstrap
EOF
  chmod 755 "$root/var/runtime/bootstrap" "$root/lambda-entrypoint.sh"
}

assemble_rootfs() { # $1 = rootfs to create, $2 = CPython prefix
  local root=$1 py=$2 lib=lib/python$LAMBDA_PY
  rm -rf "$root"
  cp -al "$ROOTFS_CACHE" "$root"                   # hard links: we only add files, never edit the cache's
  mkdir -p "$root/var/lang" "$root/var/runtime" "$root/var/task" "$root/opt"
  tar -C "$py" --exclude="./$lib/test" --exclude="./$lib/idlelib" --exclude="./$lib/tkinter" \
    --exclude="./$lib/turtledemo" --exclude="./$lib/site-packages/*" --exclude="./$lib/config-$LAMBDA_PY-*" \
    --exclude="./$lib/lib-dynload/_tkinter.*" --exclude="./bin/idle*" --exclude="./bin/pip*" \
    -cf - . | tar -C "$root/var/lang" -xf -
  mkdir -p "$root$(dirname "$py")"
  ln -sfn /var/lang "$root$py"                      # keeps the build's RUNPATH ($py/lib) valid
  PIP_ROOT_USER_ACTION=ignore "$py/bin/python$LAMBDA_PY" -m pip install -q --no-input --disable-pip-version-check \
    --only-binary=:all: --target "$root/var/runtime" "${RUNTIME_PACKAGES[@]}"
  rm -rf "$root/var/runtime/bin"
  write_runtime_files "$root"
}

import_image() { # $1 = rootfs, $2 = recipe hash, $3 = image name
  tar -C "$1" -cf - . | docker import \
    --change "ENV LANG=C.UTF-8" --change "ENV TZ=:/etc/localtime" \
    --change "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin/:/bin:/opt/bin" \
    --change "ENV LD_LIBRARY_PATH=/var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:/var/task/lib:/opt/lib" \
    --change "ENV LAMBDA_TASK_ROOT=/var/task" --change "ENV LAMBDA_RUNTIME_DIR=/var/runtime" \
    --change "LABEL local-env.recipe=$2" --change "WORKDIR /var/task" \
    --change 'ENTRYPOINT ["/lambda-entrypoint.sh"]' \
    - "$3"
}

ensure_base_image() {
  local recipe have='' old_id='' py root candidate
  recipe=$(image_recipe)
  candidate=local-env/lambda-python-candidate:$recipe
  read -r old_id have < <(docker image inspect --format '{{.Id}} {{index .Config.Labels "local-env.recipe"}}' "$BASE_IMAGE" 2>/dev/null) || true
  if [ "${have:-}" = "$recipe" ]; then
    step "base image $BASE_IMAGE" "" ""
    step_skip "already built"
    return
  fi
  ensure_rootfs
  step "base image $BASE_IMAGE" "$LOGS/base-image.log" \
    "Needs CPython $PYENV_VERSION_313 from pyenv (or LOCAL_ENV_PYTHON313=<prefix>) and PyPI for ${RUNTIME_PACKAGES[*]}; re-run: bash scripts/local-env.sh up"
  py=$(python313_prefix) || fail "no CPython $LAMBDA_PY: 'pyenv prefix $PYENV_VERSION_313' found none"
  root=$STATE/image/rootfs
  {
    assemble_rootfs "$root" "$py"
    import_image "$root" "$recipe" "$candidate"
    rm -rf "$root"
    # it gets SAM's name only once it runs: Python starts, its C extensions find their libraries, the runtime imports
    docker run --rm --network none --env PYTHONPATH=/var/runtime --entrypoint "/var/lang/bin/python$LAMBDA_PY" "$candidate" -c \
      'import ssl, sqlite3, ctypes, lzma, bz2, zlib, uuid, readline, decimal, json, awslambdaric, boto3, sys; print("image ok", sys.version.split()[0], boto3.__version__)' ||
      { docker rmi -f "$candidate"; fail "the new image does not run Python (see the log)"; }
    docker tag "$candidate" "$BASE_IMAGE"
    docker rmi "$candidate"
    # images SAM derived from an older base image (it adds aws-lambda-rie on top) would be reused: drop them
    docker images --format '{{.Repository}}:{{.Tag}}' |
      { grep -E "^(public\.ecr\.aws/lambda/python:$LAMBDA_PY-rapid-|samcli/lambda-python:$LAMBDA_PY-)" || true; } |
      xargs -r docker rmi -f
    if [ -n "$old_id" ]; then docker rmi "$old_id" || true; fi    # the outdated base image, if nothing else uses it
  } >>"$_step_log" 2>&1
  step_done "$(docker image inspect --format '{{.Size}}' "$BASE_IMAGE" | awk '{ printf "%d MB", $1 / 1e6 }')"
}

print_env() {
  local py gw
  py=$(python313_prefix) || { py=''; echo "[local-env] warning: no CPython $LAMBDA_PY found (pyenv prefix $PYENV_VERSION_313): sam build needs python$LAMBDA_PY on PATH" >&2; }
  gw=$(docker_gateway) || gw=''
  [ -n "$gw" ] || echo "[local-env] warning: no docker0 interface (is the daemon up? bash scripts/local-env.sh up): LOCAL_ENV_DOCKER_GATEWAY is empty" >&2
  # shellcheck disable=SC2016 # "$PATH" is expanded by the caller's eval
  printf 'export PATH=%q:%s"$PATH"\n' "$SAM_VENV/bin" "${py:+$(printf '%q' "$py/bin"):}"
  printf 'export __SAM_CLI_APP_DIR=%q\n' "$SAMHOME"
  printf 'export SAM_CLI_TELEMETRY=0\n'
  printf 'export SAM_SKIP_PULL_IMAGE=1\n'
  printf 'export LOCAL_ENV_DOCKER_GATEWAY=%s\n' "$gw"
  printf 'export LOCAL_ENV_ARCH=%s\n' "$ARCH"
}

cmd_up() {
  [ "$(id -u)" -eq 0 ] || { echo "[local-env] up needs root (apt-get, dockerd, debootstrap)" >&2; exit 1; }
  with_lock
  local t0
  now_us; t0=$_now
  ensure_packages
  ensure_dockerd
  ensure_sam
  ensure_samhome
  ensure_base_image
  say "ready in $(seconds_since "$t0") s; for your shell: eval \"\$(bash ${BASH_SOURCE[0]} env)\""
  print_env
}

# ---------------------------------------------------------------------------------------------------
# down / status
cmd_down() {
  with_lock
  local pid t0
  if ! pid=$(our_dockerd_pid); then
    rm -f "$DOCKERD_PIDFILE"
    if daemon_answers; then say "a docker daemon runs, but local-env did not start it: left alone"; else say "nothing to stop"; fi
    return 0
  fi
  local containers
  # every container of this daemon (SAM's function containers, anything started by hand): removed while
  # dockerd runs, so their network namespaces go with them rather than outliving the daemon
  containers=$(docker ps -aq 2>/dev/null) || containers=''
  if [ -n "$containers" ]; then
    # shellcheck disable=SC2086 # one id per word
    docker rm -f $containers >/dev/null
    say "removed $(wc -w <<<"$containers") container(s)"
  fi
  now_us; t0=$_now
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.25
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "[local-env] dockerd (pid $pid) still runs 30 s after SIGTERM; see $LOGS/dockerd.log, then kill $pid again or kill -9 $pid" >&2
    exit 1
  fi
  rm -f "$DOCKERD_PIDFILE"
  say "stopped dockerd (pid $pid) in $(seconds_since "$t0") s"
}

cmd_status() {
  local pid img id size recipe
  if pid=$(our_dockerd_pid) && daemon_answers; then
    echo "docker daemon: running, pid $pid (started by local-env, data root $DOCKER_ROOT)"
  elif daemon_answers; then
    echo "docker daemon: running, pid $(pidof dockerd || echo '?') (not started by local-env)"
  else
    echo "docker daemon: not running"
  fi
  if sam_installed_version >/dev/null; then echo "sam: $("$SAM_VENV/bin/sam" --version) ($SAM_VENV)"; else echo "sam: not installed"; fi
  if ! daemon_answers; then
    echo "base image $BASE_IMAGE: unknown (no docker daemon)"
  elif img=$(docker image inspect --format '{{.Id}} {{.Size}} {{index .Config.Labels "local-env.recipe"}}' "$BASE_IMAGE" 2>/dev/null); then
    read -r id size recipe <<<"$img"
    printf 'base image %s: present (%s, %d MB%s)\n' "$BASE_IMAGE" "${id:7:12}" "$((size / 1000000))" \
      "$([ "$recipe" = "$(image_recipe)" ] || echo ', outdated: up rebuilds it')"
  else
    echo "base image $BASE_IMAGE: absent"
  fi
}

cmd_sam() { # the SAM CLI with the environment `env` prints (it needs no Docker for build, validate, deploy)
  if [ "$(sam_installed_version || true)" != "$SAM_VERSION" ] || [ ! -s "$SAMHOME/metadata.json" ]; then
    exec 3>&2 # install progress on stderr: stdout is sam's
    with_lock
    ensure_sam
    ensure_samhome
    exec 9>&-
  fi
  eval "$(print_env 2>/dev/null)"
  trap - EXIT
  exec sam "$@"
}

case ${1:-} in
  up) cmd_up ;;
  sam) shift; cmd_sam "$@" ;;
  env) print_env ;;
  down) cmd_down ;;
  status) cmd_status ;;
  *) sed -n '2,9s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2; exit 2 ;;
esac
