#!/usr/bin/env bash
# Install the appliance into .venv in this checkout (idempotent).
#   ./install.sh                      runtime: package, its dependencies and models
#   ./install.sh --dev                + test and benchmark dependencies (and the Debian tools tests use)
#   ./install.sh --vosk-model PATH|URL  install an English Vosk model (directory, .zip, or URL verified by SHA-256)
#   ./install.sh --system             the box install (see docs/INSTALL.md): service user, /opt/appliance, units
set -euo pipefail

cd "$(dirname "$0")"
ROOT=$(pwd)
DEV=0
SYSTEM=0
UNINSTALL=0
VOSK_MODEL=""
VOSK_SHA=""
PYTHON=${PYTHON:-python3}

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }

# The box install has its own options (--board, --root, --purge, ...): hand everything over.
case " $* " in
  *" --system "*|*" --uninstall "*) exec "$ROOT/scripts/install_system.sh" "$@" ;;
esac

while [ $# -gt 0 ]; do
  case "$1" in
    --dev) DEV=1 ;;
    --system) SYSTEM=1 ;;
    --uninstall) UNINSTALL=1 ;;
    --vosk-model) VOSK_MODEL=${2:?--vosk-model needs a PATH or URL}; shift ;;
    --vosk-sha256) VOSK_SHA=${2:?--vosk-sha256 needs a hash}; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ "$SYSTEM" = 1 ] || [ "$UNINSTALL" = 1 ]; then
  exec "$ROOT/scripts/install_system.sh" "$@"
fi

RUNTIME_DEBS=(mosquitto libportaudio2 python3-venv libsndfile1)
DEV_DEBS=(espeak-ng sox libsndfile1 chromium mosquitto-clients alsa-utils libasound2-plugins shellcheck
  postgresql asterisk-core-sounds-en-wav sip-tester pulseaudio pulseaudio-utils
  asterisk-core-sounds-en)

missing_debs() {
  local p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}

apt_install() {
  local missing
  mapfile -t missing < <(missing_debs "$@")
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "warning: missing Debian packages (install them as root): ${missing[*]}" >&2
  fi
}

if command -v dpkg-query >/dev/null; then
  apt_install "${RUNTIME_DEBS[@]}"
  [ "$DEV" = 1 ] && apt_install "${DEV_DEBS[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
if [ "$DEV" = 1 ]; then
  .venv/bin/python -m pip install -q -e ".[dev]"
else
  .venv/bin/python -m pip install -q -e .
fi

# Compile the numba kernels once so the first call does not pay for it.
.venv/bin/python -c "from appliance import features; features.warm_up()" >/dev/null

if [ -n "$VOSK_MODEL" ]; then
  args=(install-vosk-model "$VOSK_MODEL" "$ROOT/models/vosk")
  [ -n "$VOSK_SHA" ] && args+=(--sha256 "$VOSK_SHA")
  .venv/bin/python -m appliance.stt "${args[@]}"
fi

echo "appliance installed in $ROOT/.venv ($(.venv/bin/appliance --version))"
