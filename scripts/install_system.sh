#!/usr/bin/env bash
# The box install (Debian 12, Raspberry Pi OS Bookworm, JetPack 6); see docs/INSTALL.md.
#   install.sh --system [options]       install or update (idempotent)
#   install.sh --uninstall [--purge]    remove units and /opt/appliance; --purge also config, data, user
# Options:
#   --board NAME        firmware_config/NAME (default: detected from /proc/device-tree/model)
#   --root DIR          install into DIR instead of / (tests, image builds; also DESTDIR=DIR);
#                       no packages, no services started, units enabled offline (systemctl --root)
#   --vosk-model SRC    install an English Vosk model (directory, .zip or URL) for speech to text
#   --vosk-sha256 HEX   expected SHA-256 of a downloaded Vosk archive
#   --wheelhouse DIR    install Python packages offline from DIR (pip --no-index --find-links)
#   --no-deps           install only the appliance package into the venv (tests; deps provided otherwise)
#   --no-apt            do not install Debian packages
#   --hostname NAME     extra DNS name in the panel certificate (default: this host's names)
#   --customer-key FILE the site's customer pseudonym key (docs/crm.md): keys/customer.key
#   --print-board       print the board folder that would be used, and exit
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
BOARD=""
UNINSTALL=0
PURGE=0
VOSK_MODEL=""
VOSK_SHA=""
WHEELHOUSE=""
NO_DEPS=0
NO_APT=0
PRINT_BOARD=0
EXTRA_HOST=""
CUSTOMER_KEY=""
PYTHON=${PYTHON:-python3}
DT_MODEL=${APPLIANCE_DT_MODEL:-/proc/device-tree/model}

SERVICE_USER=appliance
PANEL_USER=appliance-panel  # the panel's own user, in group appliance (see step 4)
PANEL_DIR=/var/lib/appliance-panel
APP_DIR=/opt/appliance
VENV=$APP_DIR/venv
CONF_DIR=/etc/appliance
STATE_DIR=/var/lib/appliance
UNIT_DIR=/etc/systemd/system
UNITS=(appliance.service appliance-panel.service appliance-retention.service appliance-retention.timer
  appliance-tap.service appliance-siprec.service)
ENABLE=(appliance.service appliance-panel.service appliance-retention.timer)

usage() { sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; }
say() { printf 'install: %s\n' "$*"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case "$1" in
    --system) ;;
    --uninstall) UNINSTALL=1 ;;
    --purge) PURGE=1 ;;
    --board) BOARD=${2:?--board needs a NAME}; shift ;;
    --root) ROOT=${2:?--root needs a DIR}; shift ;;
    --vosk-model) VOSK_MODEL=${2:?--vosk-model needs a PATH or URL}; shift ;;
    --vosk-sha256) VOSK_SHA=${2:?--vosk-sha256 needs a hash}; shift ;;
    --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a DIR}; shift ;;
    --no-deps) NO_DEPS=1 ;;
    --no-apt) NO_APT=1 ;;
    --hostname) EXTRA_HOST=${2:?--hostname needs a NAME}; shift ;;
    --print-board) PRINT_BOARD=1 ;;
    --customer-key) CUSTOMER_KEY=${2:?--customer-key needs a FILE}; shift ;;
    --dev) ;;  # accepted (install.sh passes its own options through)
    -h|--help) usage; exit 0 ;;
    *) echo "install_system.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done

if [ -n "$ROOT" ]; then
  mkdir -p "$ROOT"
  ROOT=$(cd "$ROOT" && pwd)
  [ "$ROOT" = / ] && ROOT=""
fi

# systemd running as PID 1 on the target? Never when installing into --root.
systemd_live() {
  [ -z "$ROOT" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1
}

systemctl_offline() {  # enable/disable without a running systemd (creates/removes the symlinks)
  if command -v systemctl >/dev/null 2>&1; then
    systemctl --root="${ROOT:-/}" "$@"
  else
    say "systemctl not found: skipping 'systemctl $*'"
  fi
}

# --- board ------------------------------------------------------------------------------------

detect_board() {
  local model=""
  if [ -r "$DT_MODEL" ]; then
    model=$(tr -d '\0' < "$DT_MODEL")
  fi
  case "$model" in
    *"Raspberry Pi 5"*) echo raspberry-pi-5 ;;
    *"Raspberry Pi 4"*|*"Raspberry Pi Compute Module 4"*) echo raspberry-pi-4 ;;
    *"Orin Nano"*) echo jetson-orin-nano ;;
    *) echo "" ;;
  esac
}

# --- uninstall ----------------------------------------------------------------------------------

uninstall() {
  local u
  if systemd_live; then
    systemctl disable --now "${ENABLE[@]}" 2>/dev/null || true
  else
    say "systemd is not running (PID 1): skipping 'systemctl stop'"
    systemctl_offline disable "${ENABLE[@]}" 2>/dev/null || true
  fi
  for u in "${UNITS[@]}"; do
    rm -f "$ROOT$UNIT_DIR/$u"
  done
  rm -rf "$ROOT$UNIT_DIR/appliance.service.d"
  rm -f "$ROOT/etc/udev/rules.d/90-appliance-audio.rules"
  rm -f "$ROOT/etc/systemd/journald.conf.d/90-appliance.conf"
  if [ -f "$ROOT/etc/asound.conf" ] && [ -f "$ROOT$CONF_DIR/.asound.conf.installed" ] &&
     cmp -s "$ROOT/etc/asound.conf" "$ROOT$CONF_DIR/.asound.conf.installed"; then
    rm -f "$ROOT/etc/asound.conf"
  fi
  rm -rf "${ROOT:?}$APP_DIR"
  if systemd_live; then
    systemctl daemon-reload
  fi
  if [ "$PURGE" = 1 ]; then
    rm -rf "${ROOT:?}$CONF_DIR" "${ROOT:?}$STATE_DIR" "${ROOT:?}$PANEL_DIR"
    if grep -qE "^$PANEL_USER:" "$ROOT/etc/passwd" 2>/dev/null; then
      if [ -n "$ROOT" ]; then userdel --prefix "$ROOT" "$PANEL_USER" || true
      else userdel "$PANEL_USER" || true; fi
    fi
    if getent_user >/dev/null; then
      if [ -n "$ROOT" ]; then userdel --prefix "$ROOT" "$SERVICE_USER" || true
      else userdel "$SERVICE_USER" || true; fi
    fi
    if grep -q "^$SERVICE_USER:" "$ROOT/etc/group" 2>/dev/null; then
      if [ -n "$ROOT" ]; then groupdel --prefix "$ROOT" "$SERVICE_USER" || true
      else groupdel "$SERVICE_USER" || true; fi
    fi
    say "removed the appliance, its configuration, data and the users $SERVICE_USER, $PANEL_USER"
  else
    say "removed the appliance; kept $CONF_DIR and $STATE_DIR (use --purge to delete them)"
  fi
}

getent_user() {
  grep -E "^$SERVICE_USER:" "$ROOT/etc/passwd" 2>/dev/null
}

if [ "$PRINT_BOARD" = 1 ]; then
  [ -n "$BOARD" ] || BOARD=$(detect_board)
  [ -n "$BOARD" ] || die "cannot tell the board from $DT_MODEL"
  echo "$BOARD"
  exit 0
fi
[ "$(id -u)" = 0 ] || die "run as root (sudo ./install.sh --system)"

if [ "$UNINSTALL" = 1 ]; then
  uninstall
  exit 0
fi

# --- install ------------------------------------------------------------------------------------

[ -n "$BOARD" ] || BOARD=$(detect_board)
boards() {
  local d
  for d in "$SRC"/firmware_config/*/; do
    [ -f "$d/appliance.toml" ] && basename "$d"
  done | tr '\n' ' '
}
[ -n "$BOARD" ] || die "cannot tell the board from $DT_MODEL; pass --board NAME ($(boards))"
BOARD_DIR="$SRC/firmware_config/$BOARD"
[ -f "$BOARD_DIR/appliance.toml" ] || die "no board folder firmware_config/$BOARD"
say "board $BOARD, target ${ROOT:-/}"

# 1. Debian packages (not into --root: they belong to the image build)
if [ -z "$ROOT" ] && [ "$NO_APT" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  debs=(python3-venv libportaudio2 alsa-utils openssl libsndfile1)
  missing=()
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing Debian packages: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
else
  say "skipping Debian packages (python3-venv libportaudio2 alsa-utils openssl libsndfile1)"
fi

# 2. service user, member of audio (for /dev/snd)
mkdir -p "$ROOT/etc"
if [ -n "$ROOT" ] && [ ! -f "$ROOT/etc/passwd" ]; then  # a bare target tree: minimal user database
  echo 'root:x:0:0:root:/root:/bin/bash' > "$ROOT/etc/passwd"
  echo 'root:x:0:' > "$ROOT/etc/group"
  (umask 077; echo 'root:*:19000:0:99999:7:::' > "$ROOT/etc/shadow"; echo 'root:*::' > "$ROOT/etc/gshadow")
fi
if ! getent_user >/dev/null; then
  say "creating system user $SERVICE_USER"
  grep -q '^audio:' "$ROOT/etc/group" 2>/dev/null || {
    if [ -n "$ROOT" ]; then groupadd --prefix "$ROOT" --system audio; else groupadd --system audio; fi
  }
  args=(--system --user-group --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin
        --comment "call-center emotion appliance" --groups audio)
  if [ -n "$ROOT" ]; then useradd --prefix "$ROOT" "${args[@]}" "$SERVICE_USER"
  else useradd "${args[@]}" "$SERVICE_USER"; fi
else
  if [ -n "$ROOT" ]; then usermod --prefix "$ROOT" -aG audio "$SERVICE_USER"
  else usermod -aG audio "$SERVICE_USER"; fi
fi
APP_UID=$(getent_user | cut -d: -f3)
APP_GID=$(getent_user | cut -d: -f4)
own() { chown "$APP_UID:$APP_GID" "$@"; }
# the panel runs as its own user with the daemon's group: database yes, daemon's keys no
if ! grep -qE "^$PANEL_USER:" "$ROOT/etc/passwd"; then
  say "creating system user $PANEL_USER (group $SERVICE_USER)"
  args=(--system --gid "$APP_GID" --home-dir "$PANEL_DIR" --no-create-home --shell /usr/sbin/nologin
        --comment "call-center emotion appliance panel")
  if [ -n "$ROOT" ]; then useradd --prefix "$ROOT" "${args[@]}" "$PANEL_USER"
  else useradd "${args[@]}" "$PANEL_USER"; fi
fi
PANEL_UID=$(grep -E "^$PANEL_USER:" "$ROOT/etc/passwd" | cut -d: -f3)

# 3. the application: a copy of the checkout (without VCS, venvs, caches, databases) + a venv
say "copying the application to $APP_DIR"
mkdir -p "$ROOT$APP_DIR"
tar -C "$SRC" -cf - \
  --exclude=./.git --exclude=./.venv --exclude=./venv --exclude='__pycache__' \
  --exclude=./.pytest_cache --exclude=./.ruff_cache --exclude=./.hypothesis --exclude=./.numba_cache \
  --exclude='*.db' --exclude='*.db-wal' --exclude='*.db-shm' --exclude='*.db.writers' --exclude=./tmp --exclude=./out \
  --exclude='*.egg-info' --exclude=./build --exclude=./node_modules --exclude='./_*_tmp.py' . |
  tar -C "$ROOT$APP_DIR" -xf - --no-same-owner
chown -R root:root "$ROOT$APP_DIR"
chmod -R go-w "$ROOT$APP_DIR"

if [ ! -x "$ROOT$VENV/bin/python" ]; then
  say "creating the virtual environment $VENV"
  "$PYTHON" -m venv "$ROOT$VENV"
fi
pip_args=(install -q --disable-pip-version-check --upgrade)
[ -n "$WHEELHOUSE" ] && pip_args+=(--no-index --find-links "$WHEELHOUSE")
[ "$NO_DEPS" = 1 ] && pip_args+=(--no-deps)
if [ -n "$WHEELHOUSE" ]; then
  # offline: the appliance wheel comes from the wheelhouse too (built with `pip wheel .`)
  "$ROOT$VENV/bin/python" -m pip "${pip_args[@]}" appliance
else
  "$ROOT$VENV/bin/python" -m pip "${pip_args[@]}" "$ROOT$APP_DIR"
fi
if [ "$NO_DEPS" = 0 ] && ! "$ROOT$VENV/bin/python" -c "import gunicorn" 2>/dev/null; then
  pip2=(install -q --disable-pip-version-check)
  [ -n "$WHEELHOUSE" ] && pip2+=(--no-index --find-links "$WHEELHOUSE")
  "$ROOT$VENV/bin/python" -m pip "${pip2[@]}" gunicorn
fi

# 4. state: database, numba cache, keys, models (owned by the service user, not world-readable).
# The folder is group-writable and sticky (the panel creates the database's -wal/-shm files but
# cannot rename or delete the daemon's); keys/ lets the group open files by name, not list them.
mkdir -p "$ROOT$STATE_DIR/numba-cache" "$ROOT$STATE_DIR/keys" "$ROOT$STATE_DIR/models" "$ROOT$PANEL_DIR"
own "$ROOT$STATE_DIR" "$ROOT$STATE_DIR/numba-cache" "$ROOT$STATE_DIR/keys" "$ROOT$STATE_DIR/models"
chmod 1770 "$ROOT$STATE_DIR"
chmod 0750 "$ROOT$STATE_DIR/numba-cache" "$ROOT$STATE_DIR/models"
chmod 0710 "$ROOT$STATE_DIR/keys"
chown "$PANEL_UID:$APP_GID" "$ROOT$PANEL_DIR"
chmod 0700 "$ROOT$PANEL_DIR"
rm -f "$ROOT$STATE_DIR/panel-secret.key"  # the panel's session secret lives in $PANEL_DIR now

# 5. configuration: the board's example, never overwriting an existing one
mkdir -p "$ROOT$CONF_DIR"
chown "root:$APP_GID" "$ROOT$CONF_DIR"
chmod 0750 "$ROOT$CONF_DIR"
if [ ! -f "$ROOT$CONF_DIR/appliance.toml" ]; then
  install -m 0640 -o root -g "$APP_GID" "$BOARD_DIR/appliance.toml" "$ROOT$CONF_DIR/appliance.toml"
  say "wrote $CONF_DIR/appliance.toml from firmware_config/$BOARD (edit box.id and positions)"
else
  say "keeping the existing $CONF_DIR/appliance.toml"
fi
install -m 0644 "$BOARD_DIR/appliance.toml" "$ROOT$CONF_DIR/appliance.toml.example"
if ! "$ROOT$VENV/bin/appliance" check-config "$ROOT$CONF_DIR/appliance.toml" >/dev/null 2>"$ROOT$CONF_DIR/.check-config.log"; then
  cat "$ROOT$CONF_DIR/.check-config.log" >&2
  die "$CONF_DIR/appliance.toml does not validate"
fi
rm -f "$ROOT$CONF_DIR/.check-config.log"

# 6. panel TLS certificate (self-signed, with subjectAltName) and the /metrics token
KEY="$ROOT$STATE_DIR/keys/panel.key"
CRT="$ROOT$STATE_DIR/keys/panel.crt"
if [ ! -s "$KEY" ] || [ ! -s "$CRT" ]; then
  host=$(hostname 2>/dev/null || echo appliance)
  san="DNS:$host,DNS:$host.local,DNS:localhost,IP:127.0.0.1"
  [ -n "$EXTRA_HOST" ] && san="$san,DNS:$EXTRA_HOST"
  for ip in $(hostname -I 2>/dev/null || true); do
    case "$ip" in *:*) ;; *) san="$san,IP:$ip" ;; esac
  done
  say "creating the panel certificate ($san)"
  (umask 077
   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -sha256 \
     -days 825 -subj "/CN=$host/O=call-center appliance" \
     -addext "subjectAltName=$san" -addext "extendedKeyUsage=serverAuth" \
     -keyout "$KEY" -out "$CRT" 2>/dev/null)
fi
if [ ! -s "$ROOT$STATE_DIR/keys/metrics.token" ]; then
  (umask 077; openssl rand -hex 32 > "$ROOT$STATE_DIR/keys/metrics.token")
fi
# the daemon's password for the local broker (the only user it admits; docs/mqtt.md)
if [ ! -s "$ROOT$STATE_DIR/keys/mqtt.password" ]; then
  (umask 077; openssl rand -hex 24 > "$ROOT$STATE_DIR/keys/mqtt.password")
  own "$ROOT$STATE_DIR/keys/mqtt.password"
  say "created $STATE_DIR/keys/mqtt.password: add it to the local broker (docs/mqtt.md)"
fi
own "$KEY" "$CRT" "$ROOT$STATE_DIR/keys/metrics.token"
# the panel's own files are readable by the group; everything else in keys/ (pseudonym key, MQTT
# credentials) is the daemon's alone, whatever umask created it
for f in "$ROOT$STATE_DIR"/keys/*; do
  [ -f "$f" ] || continue
  case "$(basename "$f")" in
    panel.key|metrics.token) chmod 0640 "$f" ;;
    panel.crt) chmod 0644 "$f" ;;
    *) chmod 0600 "$f" ;;
  esac
done

# the database: shared by the daemon and the panel (group appliance, 0660; SQLite gives its
# -wal and -shm files the same mode)
DB_FILE=$("$ROOT$VENV/bin/python" -c 'import sys; from appliance.config import load_config
c = load_config(sys.argv[1]); print(c.resolve(c.paths.db))' "$ROOT$CONF_DIR/appliance.toml")
case "$DB_FILE" in
  "$STATE_DIR"/*)
    if [ ! -e "$ROOT$DB_FILE" ]; then install -m 0660 /dev/null "$ROOT$DB_FILE"; fi
    for f in "$ROOT$DB_FILE" "$ROOT$DB_FILE-wal" "$ROOT$DB_FILE-shm"; do
      if [ -e "$f" ]; then own "$f"; chmod 0660 "$f"; fi
    done ;;
  *) say "warning: paths.db $DB_FILE is outside $STATE_DIR: give it mode 0660, group $SERVICE_USER, for the panel" ;;
esac

# 6b. the site's customer key: the same file on every box of the site and at the CRM bridge
if [ -n "$CUSTOMER_KEY" ]; then
  [ -s "$CUSTOMER_KEY" ] || die "--customer-key $CUSTOMER_KEY is missing or empty"
  install -m 0600 -o "$APP_UID" -g "$APP_GID" "$CUSTOMER_KEY" "$ROOT$STATE_DIR/keys/customer.key"
  say "installed the site customer key ($("$ROOT$VENV/bin/appliance" customer-key id --key-file "$ROOT$STATE_DIR/keys/customer.key"));" \
    "set mqtt.customer_key_file = \"$STATE_DIR/keys/customer.key\" in $CONF_DIR/appliance.toml"
fi

# 7. optional Vosk model
if [ -n "$VOSK_MODEL" ]; then
  args=(-m appliance.stt install-vosk-model "$VOSK_MODEL" "$ROOT$STATE_DIR/models/vosk-en")
  [ -n "$VOSK_SHA" ] && args+=(--sha256 "$VOSK_SHA")
  "$ROOT$VENV/bin/python" "${args[@]}"
  chown -R "$APP_UID:$APP_GID" "$ROOT$STATE_DIR/models"
fi

# 8. audio devices and storage: udev card ids, ALSA PCMs, journald in RAM
install -D -m 0644 "$BOARD_DIR/90-appliance-audio.rules" "$ROOT/etc/udev/rules.d/90-appliance-audio.rules"
if [ ! -f "$ROOT/etc/asound.conf" ] ||
   { [ -f "$ROOT$CONF_DIR/.asound.conf.installed" ] && cmp -s "$ROOT/etc/asound.conf" "$ROOT$CONF_DIR/.asound.conf.installed"; }; then
  install -m 0644 "$BOARD_DIR/asound.conf" "$ROOT/etc/asound.conf"
  install -m 0644 "$BOARD_DIR/asound.conf" "$ROOT$CONF_DIR/.asound.conf.installed"
else
  install -m 0644 "$BOARD_DIR/asound.conf" "$ROOT$CONF_DIR/asound.conf.$BOARD"
  say "kept the existing /etc/asound.conf; the board's PCMs are in $CONF_DIR/asound.conf.$BOARD"
fi
if [ -f "$BOARD_DIR/journald.conf.d/90-appliance.conf" ]; then
  install -D -m 0644 "$BOARD_DIR/journald.conf.d/90-appliance.conf" \
    "$ROOT/etc/systemd/journald.conf.d/90-appliance.conf"
fi

# 9. systemd units
mkdir -p "$ROOT$UNIT_DIR"
for u in "${UNITS[@]}"; do
  install -m 0644 "$SRC/systemd/$u" "$ROOT$UNIT_DIR/$u"
done
say "installed units: ${UNITS[*]}"

# 10. compile the numba kernels once as the service user (first start would otherwise do it)
if [ -z "$ROOT" ] && [ "$NO_DEPS" = 0 ] && command -v runuser >/dev/null 2>&1; then
  say "warming up the numba kernel cache"
  runuser -u "$SERVICE_USER" -- env NUMBA_CACHE_DIR="$STATE_DIR/numba-cache" HOME="$STATE_DIR" \
    "$VENV/bin/python" -c "from appliance import features; features.warm_up()" >/dev/null ||
    say "warning: numba warm-up failed (the daemon will compile on its first start)"
fi

# 11. enable (offline symlinks work without a running systemd) and start where systemd runs
systemctl_offline enable "${ENABLE[@]}"
if systemd_live; then
  if udevadm control --reload; then udevadm trigger --subsystem-match=sound || true; fi
  systemctl daemon-reload
  systemctl restart systemd-journald || true
  systemctl restart "${ENABLE[@]}"
  say "services running: systemctl status appliance appliance-panel"
else
  say "systemd is not running (PID 1) on the target: skipping 'systemctl daemon-reload', 'systemctl restart ${ENABLE[*]}' and 'udevadm trigger'"
fi
say "done: ${ROOT:-/} (board $BOARD); panel https://$(hostname 2>/dev/null || echo appliance):8443/"
