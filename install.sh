#!/usr/bin/env bash
# install.sh - provision vessel-seg on an Atlas 200DK (Ascend 310, CANN/pyACL) as a systemd service.
#
#   sudo ./install.sh                      install or upgrade (keeps config and data), start, check /healthz
#   sudo ./install.sh --sim                a machine without CANN/NPU (dev box): runtime sim
#   sudo ./install.sh --uninstall [--purge]
#   ./install.sh --root DIR --sim --no-pip stage the installation under DIR (tests, image building)
#   ./install.sh --dry-run                 print what would be done, change nothing
#
# Run ./install.sh --help for every option. Idempotent: running it again repairs modes and owners,
# reinstalls the package and the model bundle, and never overwrites /etc/vessel-seg/config.yaml.
set -Eeuo pipefail
umask 022
# No failure path ends silently: a command that fails outside an explicit check says what failed and where.
on_unexpected_error() {
    local rc=$1 line=$2 cmd=$3
    [ "${BASH_SUBSHELL:-0}" -eq 0 ] || return 0
    printf '%s\n' "ERROR: install.sh stopped at line $line${FUNCNAME[1]:+ (in ${FUNCNAME[1]})}: '$cmd' failed (exit $rc)" >&2
}
trap 'on_unexpected_error $? $LINENO "$BASH_COMMAND"' ERR

readonly APP=vessel-seg
readonly SERVICE_USER=vessel-seg
readonly PREFIX=/opt/vessel-seg
readonly DATA_DIR=/var/lib/vessel-seg
readonly ETC_DIR=/etc/vessel-seg
readonly UNIT_DIR=/etc/systemd/system
readonly NPU_NODES="davinci0 davinci_manager devmm_svm hisi_hdc"
readonly DEFAULT_NPU_GROUP=HwHiAiUser
SRC_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly SRC_DIR

ROOT=""
DRY_RUN=0
NO_START=0
SIM=0
UNINSTALL=0
PURGE=0
PYTHON=""
CANN_ARG=""
OFFLINE=0
WHEELHOUSE=""
NO_PIP=0
BUNDLE=vessel-unet
DEV_DIR=/dev
HEALTH_TIMEOUT=60

CANN_SETENV=""
CANN_VERSION=""
NPU_GROUP=""
ACTIONS_FILE=""
declare -a CANN_ENV=()

usage() {
    cat <<EOF
Usage: $0 [options]

Install (or upgrade) vessel-seg as the systemd service '$APP':
  user $SERVICE_USER, data in $DATA_DIR, config in $ETC_DIR, code and model in $PREFIX.

Options:
  --root DIR         stage everything under DIR (no useradd/chown/systemctl on this system; the
                     root-only steps are written to DIR$ETC_DIR/install-actions.sh)
  --dry-run          print every action, change nothing
  --no-start         install and enable, but do not start the service or check /healthz
  --sim              no CANN/NPU needed (dev machine): configure runtime sim
  --uninstall        stop and remove the service and $PREFIX; keeps config and data
  --purge            with --uninstall: also remove $ETC_DIR, $DATA_DIR and the $SERVICE_USER user
  --python PATH      Python for the virtualenv (default: the newest python3.x that pyACL supports)
  --cann DIR         CANN installation: a directory holding set_env.sh, or the set_env.sh itself
  --offline          no internet: pip installs only from --wheelhouse
  --wheelhouse DIR   directory of wheels for pip (with --offline: the only source)
  --no-pip           skip the virtualenv/pip step (it is recorded; for tests and images)
  --bundle NAME      model bundle under models/ to install (default: $BUNDLE)
  --dev-dir DIR      where the NPU device nodes are (default: /dev)
  --health-timeout S seconds to wait for /healthz after starting (default: $HEALTH_TIMEOUT)
  -h, --help         this help
EOF
}

# ----------------------------------------------------------------------------------------- output
info() { printf '%s\n' "==> $*"; }
warn() { printf '%s\n' "WARNING: $*" >&2; }
die() {
    printf '%s\n' "ERROR: $*" >&2
    exit 1
}

# A quoted command line, for printing and for the actions file.
quote_cmd() {
    local out="" arg
    for arg in "$@"; do
        out+="${out:+ }$(printf '%q' "$arg")"
    done
    printf '%s' "$out"
}

# Run a command that changes this system (or the staging tree): printed under --dry-run.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '%s\n' "[dry-run] $(quote_cmd "$@")"
        return 0
    fi
    "$@" || {
        local rc=$?
        printf '%s\n' "ERROR: '$(quote_cmd "$@")' failed (exit $rc)" >&2
        return "$rc"
    }
}

# A step only root can do on the target (useradd, chown, systemctl): under --root it is recorded
# in the actions file instead, so the staged tree can be completed on the board.
root_action() {
    if [ -n "$ROOT" ]; then
        if [ "$DRY_RUN" -eq 1 ]; then
            printf '%s\n' "[dry-run] record: $(quote_cmd "$@")"
        else
            printf '%s\n' "$(quote_cmd "$@")" >>"$ACTIONS_FILE"
            printf '%s\n' "    recorded: $(quote_cmd "$@")"
        fi
        return 0
    fi
    run "$@"
}

# Like root_action, but for a shell line with a guard ("id -u X || useradd ..."): recorded verbatim
# under --root, run through sh otherwise.
root_shell() {
    if [ -n "$ROOT" ]; then
        if [ "$DRY_RUN" -eq 1 ]; then
            printf '%s\n' "[dry-run] record: $1"
        else
            printf '%s\n' "$1" >>"$ACTIONS_FILE"
            printf '%s\n' "    recorded: $1"
        fi
        return 0
    fi
    run sh -c "$1"
}

# A step that was skipped on purpose, noted as a comment in the actions file under --root.
record_note() {
    info "$*"
    if [ -n "$ROOT" ] && [ "$DRY_RUN" -eq 0 ]; then
        printf '# %s\n' "$*" >>"$ACTIONS_FILE"
    fi
}

# Write stdin to a file atomically with a mode (tmp + rename); under --dry-run only say so.
write_file() {
    local dest=$1 mode=$2 tmp
    if [ "$DRY_RUN" -eq 1 ]; then
        cat >/dev/null
        printf '%s\n' "[dry-run] write $dest (mode $mode)"
        return 0
    fi
    tmp=$(mktemp "$dest.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    mv -f "$tmp" "$dest"
}

# Path of a target location in the staging tree ($ROOT is empty on a real install).
t() { printf '%s%s' "$ROOT" "$1"; }

# ----------------------------------------------------------------------------------------- options
parse_args() {
    while [ $# -gt 0 ]; do
        case "$1" in
            --root) ROOT=${2:?--root needs a directory}; shift ;;
            --root=*) ROOT=${1#*=} ;;
            --dry-run) DRY_RUN=1 ;;
            --no-start) NO_START=1 ;;
            --sim) SIM=1 ;;
            --uninstall) UNINSTALL=1 ;;
            --purge) PURGE=1 ;;
            --python) PYTHON=${2:?--python needs a path}; shift ;;
            --python=*) PYTHON=${1#*=} ;;
            --cann) CANN_ARG=${2:?--cann needs a directory}; shift ;;
            --cann=*) CANN_ARG=${1#*=} ;;
            --offline) OFFLINE=1 ;;
            --wheelhouse) WHEELHOUSE=${2:?--wheelhouse needs a directory}; shift ;;
            --wheelhouse=*) WHEELHOUSE=${1#*=} ;;
            --no-pip) NO_PIP=1 ;;
            --bundle) BUNDLE=${2:?--bundle needs a name}; shift ;;
            --bundle=*) BUNDLE=${1#*=} ;;
            --dev-dir) DEV_DIR=${2:?--dev-dir needs a directory}; shift ;;
            --dev-dir=*) DEV_DIR=${1#*=} ;;
            --health-timeout) HEALTH_TIMEOUT=${2:?--health-timeout needs seconds}; shift ;;
            --health-timeout=*) HEALTH_TIMEOUT=${1#*=} ;;
            -h | --help) usage; exit 0 ;;
            *) usage >&2; die "unknown option: $1" ;;
        esac
        shift
    done
    if [ "$PURGE" -eq 1 ] && [ "$UNINSTALL" -eq 0 ]; then
        die "--purge only makes sense with --uninstall"
    fi
    if [ "$OFFLINE" -eq 1 ] && [ -z "$WHEELHOUSE" ] && [ "$NO_PIP" -eq 0 ]; then
        die "--offline needs --wheelhouse DIR (a directory of wheels for vessel-seg and its dependencies)"
    fi
    if [ -n "$WHEELHOUSE" ] && [ ! -d "$WHEELHOUSE" ]; then
        die "--wheelhouse $WHEELHOUSE is not a directory"
    fi
    if [ -n "$WHEELHOUSE" ]; then
        WHEELHOUSE=$(cd "$WHEELHOUSE" && pwd)
    fi
    case "$HEALTH_TIMEOUT" in
        '' | *[!0-9]*) die "--health-timeout must be a whole number of seconds, got '$HEALTH_TIMEOUT'" ;;
    esac
    case "$BUNDLE" in
        '' | */* | .*) die "--bundle must be a folder name under models/, got '$BUNDLE'" ;;
    esac
    if [ -n "$ROOT" ]; then
        case "$ROOT" in
            /) ROOT="" ;;
            /*) ROOT=${ROOT%/} ;;
            *) ROOT=$(pwd)/${ROOT%/} ;;
        esac
    fi
    if [ -n "$ROOT" ] && [ "$DRY_RUN" -eq 0 ]; then
        mkdir -p "$ROOT"
    fi
}

# ----------------------------------------------------------------------------------------- checks
check_privileges() {
    if [ -z "$ROOT" ] && [ "$DRY_RUN" -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
        die "run as root (sudo $0 ...), or stage the installation with --root DIR, or look with --dry-run"
    fi
}

detect_platform() {
    local arch os_file os_name="unknown" os_id="" os_version=""
    arch=$(uname -m)
    [ "$(uname -s)" = Linux ] || die "vessel-seg needs Linux (found $(uname -s))"
    case "$arch" in
        aarch64 | x86_64) ;;
        *)
            if [ "$SIM" -eq 0 ]; then
                die "architecture $arch: CANN/pyACL exists for aarch64 (Atlas 200DK) and x86_64 only;" \
                    "use --sim for a simulator-only install"
            fi
            ;;
    esac
    os_file=$(t /etc/os-release)
    [ -r "$os_file" ] || os_file=/etc/os-release
    if [ -r "$os_file" ]; then
        # shellcheck source=/dev/null
        os_name=$(. "$os_file" && printf '%s' "${PRETTY_NAME:-$NAME}")
        # shellcheck source=/dev/null
        os_id=$(. "$os_file" && printf '%s' "${ID:-}")
        # shellcheck source=/dev/null
        os_version=$(. "$os_file" && printf '%s' "${VERSION_ID:-}")
    fi
    info "platform: $arch, $os_name"
    case "$os_id" in
        ubuntu | debian | openEuler | openeuler | euleros | kylin | centos) ;;
        *) warn "untested OS '$os_id $os_version' (the Atlas 200DK image is Ubuntu 18.04)" ;;
    esac
    if [ -z "$ROOT" ]; then
        if ! command -v systemctl >/dev/null 2>&1; then
            die "systemd (systemctl) is required to run vessel-seg as a service"
        fi
        info "systemd: $(systemctl --version | head -n 1)"
    fi
}

# The CANN environment script: --cann, else the usual places (under --root: inside DIR).
find_cann() {
    local home candidates=() c
    if [ -n "$CANN_ARG" ]; then
        if [ -f "$CANN_ARG" ]; then
            CANN_SETENV=$CANN_ARG
        elif [ -f "$CANN_ARG/set_env.sh" ]; then
            CANN_SETENV=$CANN_ARG/set_env.sh
        else
            die "--cann $CANN_ARG: no set_env.sh there (give the ascend-toolkit or nnrt directory, or the set_env.sh file)"
        fi
    else
        home=$(getent passwd "$DEFAULT_NPU_GROUP" 2>/dev/null | cut -d: -f6 || true)
        [ -n "$home" ] || home=/home/$DEFAULT_NPU_GROUP
        candidates=(
            /usr/local/Ascend/ascend-toolkit/set_env.sh
            /usr/local/Ascend/nnrt/set_env.sh
            "$home/Ascend/ascend-toolkit/set_env.sh"
            "$home/Ascend/nnrt/set_env.sh"
        )
        for c in "${candidates[@]}"; do
            if [ -f "$(t "$c")" ]; then
                CANN_SETENV=$(t "$c")
                break
            fi
        done
        if [ -z "$CANN_SETENV" ]; then
            die "CANN not found: no set_env.sh in ${candidates[*]}${ROOT:+ (under $ROOT)}.
       Install the CANN toolkit or nnrt (docs/DEPLOY.md), point to it with --cann DIR,
       or use --sim on a machine without an NPU."
        fi
    fi
    CANN_SETENV=$(cd "$(dirname "$CANN_SETENV")" && pwd)/$(basename "$CANN_SETENV")
    info "CANN: $CANN_SETENV"
}

# Source set_env.sh in a clean subshell and keep the variables the service needs (systemd does not
# source shell scripts): LD_LIBRARY_PATH, PYTHONPATH, PATH, ASCEND_*, TOOLCHAIN_HOME.
capture_cann_env() {
    local line key value dump
    # shellcheck disable=SC2016  # $1 is expanded by the inner bash
    dump=$(env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        bash -c 'set +eu; . "$1" >/dev/null 2>&1; env' capture "$CANN_SETENV") ||
        die "sourcing $CANN_SETENV failed"
    CANN_ENV=()
    while IFS= read -r line; do
        key=${line%%=*}
        value=${line#*=}
        case "$key" in
            LD_LIBRARY_PATH | PYTHONPATH | PATH | ASCEND_* | TOOLCHAIN_HOME) ;;
            *) continue ;;
        esac
        if [ -n "$ROOT" ]; then
            value=${value//"$ROOT"/}
        fi
        value=$(tidy_pathlist "$value")
        [ -n "$value" ] && CANN_ENV+=("$key=$value")
    done <<<"$dump"
    if ! printf '%s\n' "${CANN_ENV[@]}" | grep -q -e '^ASCEND_' -e '^LD_LIBRARY_PATH='; then
        die "$CANN_SETENV set neither ASCEND_* nor LD_LIBRARY_PATH: is it a CANN set_env.sh?"
    fi
    CANN_VERSION=$(cann_version)
    info "CANN version: ${CANN_VERSION:-unknown}"
}

# Drop empty components from a colon-separated list (set_env.sh appends to unset variables).
tidy_pathlist() {
    local in=$1 out="" part
    local -a parts=()
    case "$in" in
        *:*) ;;
        *) printf '%s' "$in"; return 0 ;;
    esac
    IFS=: read -r -a parts <<<"$in"
    for part in "${parts[@]}"; do
        [ -n "$part" ] && out+="${out:+:}$part"
    done
    printf '%s' "$out"
}

cann_env_value() {
    local kv
    for kv in "${CANN_ENV[@]}"; do
        if [ "${kv%%=*}" = "$1" ]; then
            printf '%s' "${kv#*=}"
            return 0
        fi
    done
    return 1
}

# "5.0.4" etc. from version.info / ascend_toolkit_install.info next to the CANN (empty if unknown).
cann_version() {
    local home dir f v
    home=$(cann_env_value ASCEND_TOOLKIT_HOME || true)
    dir=$(dirname "$CANN_SETENV")
    for f in "${home:+$(t "$home")/version.info}" "${home:+$(t "$home")/ascend_toolkit_install.info}" \
        "$dir/latest/version.info" "$dir/version.info" "$dir/ascend_toolkit_install.info" \
        "$dir/ascend_nnrt_install.info" "$dir/latest/ascend_toolkit_install.info"; do
        if [ -z "$f" ] || [ ! -r "$f" ]; then continue; fi
        v=$(sed -n 's/^[[:space:]]*[Vv]ersion[[:space:]]*=[[:space:]]*//p' "$f" | head -n 1)
        if [ -n "$v" ]; then
            printf '%s' "$v"
            return 0
        fi
    done
}

# Highest Python 3 minor version pyACL of this CANN supports (classic 200DK CANN: 3.7 to 3.9).
max_python_minor() {
    local major=${CANN_VERSION%%.*}
    case "$major" in
        '' | *[!0-9]*) printf 9 ;;
        *) if [ "$major" -ge 8 ]; then printf 11; elif [ "$major" -ge 7 ]; then printf 10; else printf 9; fi ;;
    esac
}

check_npu_devices() {
    local node missing=() group
    for node in $NPU_NODES; do
        [ -e "$DEV_DIR/$node" ] || missing+=("$DEV_DIR/$node")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ -n "$ROOT" ]; then
            warn "NPU device nodes missing here: ${missing[*]} (fine when staging an image)"
        else
            die "NPU device nodes missing: ${missing[*]}. Is the Ascend driver loaded (npu-smi info)?" \
                "Use --sim on a machine without an NPU."
        fi
    fi
    if [ -e "$DEV_DIR/davinci0" ]; then
        group=$(stat -c %G "$DEV_DIR/davinci0")
        info "NPU: $DEV_DIR/davinci0 ($(stat -c '%A %U:%G' "$DEV_DIR/davinci0"))"
        if [ "$group" = root ]; then
            warn "$DEV_DIR/davinci0 belongs to group root: the service user cannot open it;" \
                "fix the driver's udev rules (docs/DEPLOY.md, troubleshooting)"
            NPU_GROUP=""
        else
            NPU_GROUP=$group
        fi
    else
        NPU_GROUP=$DEFAULT_NPU_GROUP
    fi
}

python_minor() { "$1" -c 'import sys; print(sys.version_info[1] if sys.version_info[0] == 3 else -1)' 2>/dev/null; }

# Does $1 import pyACL in the captured CANN environment?
python_imports_acl() {
    env -i HOME=/root "${CANN_ENV[@]}" "$1" -c 'import acl' >/dev/null 2>&1
}

choose_python() {
    local max candidates=() c path minor tried=() lo=7
    if [ "$SIM" -eq 1 ]; then max=99; else max=$(max_python_minor); fi
    if [ -n "$PYTHON" ]; then
        candidates=("$PYTHON")
    else
        candidates=(python3.13 python3.12 python3.11 python3.10 python3.9 python3.8 python3.7 python3)
    fi
    for c in "${candidates[@]}"; do
        path=$(command -v "$c" 2>/dev/null || true)
        if [ -z "$path" ]; then
            [ -n "$PYTHON" ] && die "--python $PYTHON: not found or not executable"
            continue
        fi
        path=$(cd "$(dirname "$path")" && pwd)/$(basename "$path")
        # A candidate that fails to run (a pyenv shim for a version not installed, a broken link) is skipped.
        if ! minor=$(python_minor "$path") || [ -z "$minor" ]; then
            [ -n "$PYTHON" ] && die "--python $PYTHON: $path does not run"
            info "skipping $path: it does not run (a pyenv shim for a version that is not installed?)"
            tried+=("$path (does not run)")
            continue
        fi
        if [ "$minor" -lt "$lo" ] || [ "$minor" -gt "$max" ]; then
            tried+=("$path (3.${minor:-?})")
            continue
        fi
        if [ "$SIM" -eq 0 ] && [ -z "$ROOT" ] && ! python_imports_acl "$path"; then
            tried+=("$path (3.$minor: cannot import acl)")
            continue
        fi
        PYTHON=$path
        info "python: $PYTHON (3.$minor)"
        return 0
    done
    if [ "$SIM" -eq 1 ]; then
        die "no Python >= 3.7 found (tried: ${tried[*]:-none}); install python3 or pass --python PATH"
    fi
    die "no Python that pyACL (CANN ${CANN_VERSION:-unknown}) supports: needs 3.$lo to 3.$max with 'import acl' working in the CANN environment.
       Tried: ${tried[*]:-none}. Install python3.7 (classic 200DK CANN) or pass --python PATH."
}

check_venv_support() {
    [ "$NO_PIP" -eq 1 ] && return 0
    if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        die "$PYTHON cannot create virtualenvs (no venv/ensurepip): apt-get install python3.$(python_minor "$PYTHON")-venv"
    fi
}

check_source_tree() {
    [ -f "$SRC_DIR/pyproject.toml" ] || die "$SRC_DIR/pyproject.toml missing: run install.sh from a vessel-seg checkout"
    [ -f "$SRC_DIR/systemd/$APP.service" ] || die "$SRC_DIR/systemd/$APP.service missing"
    [ -f "$SRC_DIR/config/vessel-seg.yaml" ] || die "$SRC_DIR/config/vessel-seg.yaml (the config template) missing"
    [ -f "$SRC_DIR/models/$BUNDLE/model.yaml" ] || die "model bundle $SRC_DIR/models/$BUNDLE (model.yaml) missing"
}

# ----------------------------------------------------------------------------------------- install steps
ensure_user() {
    if [ -z "$ROOT" ] && id -u "$SERVICE_USER" >/dev/null 2>&1; then
        info "user $SERVICE_USER exists"
    else
        info "creating system user $SERVICE_USER"
        local useradd="useradd --system --user-group --home-dir $DATA_DIR --no-create-home"
        useradd+=" --shell /usr/sbin/nologin --comment 'vessel-seg service' $SERVICE_USER"
        root_shell "id -u $SERVICE_USER >/dev/null 2>&1 || $useradd"
    fi
    if [ -n "$NPU_GROUP" ]; then
        if [ -z "$ROOT" ] && id -nG "$SERVICE_USER" 2>/dev/null | tr ' ' '\n' | grep -qx "$NPU_GROUP"; then
            info "user $SERVICE_USER is in group $NPU_GROUP"
        elif [ -z "$ROOT" ] && ! getent group "$NPU_GROUP" >/dev/null 2>&1; then
            warn "group $NPU_GROUP does not exist; $SERVICE_USER cannot use the NPU"
        else
            info "adding $SERVICE_USER to group $NPU_GROUP (owner of /dev/davinci*)"
            root_action usermod -a -G "$NPU_GROUP" "$SERVICE_USER"
        fi
    fi
}

# A directory with owner (via root_action: recorded under --root) and mode; repairs existing ones.
make_dir() {
    local dir=$1 mode=$2 owner=$3
    run install -d "$(t "$dir")"
    root_action chown "$owner" "$dir"
    run chmod "$mode" "$(t "$dir")"
}

make_directories() {
    info "directories"
    make_dir "$DATA_DIR" 0750 "$SERVICE_USER:$SERVICE_USER"
    # capture/ is group-writable (setgid) so a camera account in group vessel-seg can drop images.
    make_dir "$DATA_DIR/capture" 2770 "$SERVICE_USER:$SERVICE_USER"
    make_dir "$DATA_DIR/results" 0750 "$SERVICE_USER:$SERVICE_USER"
    make_dir "$DATA_DIR/quarantine" 0750 "$SERVICE_USER:$SERVICE_USER"
    make_dir "$DATA_DIR/state" 0750 "$SERVICE_USER:$SERVICE_USER"
    make_dir "$ETC_DIR" 0750 "root:$SERVICE_USER"
    make_dir "$PREFIX" 0755 root:root
    make_dir "$PREFIX/models" 0755 root:root
}

install_package() {
    local venv pip_opts=()
    venv=$(t "$PREFIX/venv")
    if [ "$NO_PIP" -eq 1 ]; then
        record_note "skipped (--no-pip): $(quote_cmd "$PYTHON" -m venv "$PREFIX/venv") &&" \
            "$(quote_cmd "$PREFIX/venv/bin/python" -m pip install --upgrade "$SRC_DIR")"
        return 0
    fi
    if [ -x "$venv/bin/python" ] &&
        [ "$("$venv/bin/python" -c 'import sys; print(sys.version_info[:2])' 2>/dev/null)" = \
            "$("$PYTHON" -c 'import sys; print(sys.version_info[:2])')" ]; then
        info "virtualenv $venv exists"
    else
        info "creating virtualenv $venv"
        run rm -rf "$venv"
        run "$PYTHON" -m venv "$venv"
    fi
    if [ "$OFFLINE" -eq 1 ]; then
        pip_opts=(--no-index --find-links "$WHEELHOUSE")
    elif [ -n "$WHEELHOUSE" ]; then
        pip_opts=(--find-links "$WHEELHOUSE")
    fi
    info "installing vessel-seg into $venv"
    # The build runs in the venv (no build isolation): offline, only the wheelhouse's
    # setuptools/wheel for this Python are needed, not whatever the newest ones require.
    run "$venv/bin/python" -m pip install --disable-pip-version-check "${pip_opts[@]}" --upgrade pip \
        "setuptools>=61" wheel ||
        die "pip could not install pip, setuptools>=61 and wheel for $PYTHON${WHEELHOUSE:+ (are wheels for this Python in $WHEELHOUSE?)}"
    run "$venv/bin/python" -m pip install --disable-pip-version-check "${pip_opts[@]}" --no-build-isolation \
        --upgrade "$SRC_DIR" ||
        die "pip install of $SRC_DIR failed (see above)${WHEELHOUSE:+; offline, every dependency must be in $WHEELHOUSE}"
    if [ "$DRY_RUN" -eq 0 ]; then
        "$venv/bin/vessel-seg" --version >/dev/null || die "$venv/bin/vessel-seg does not run after installation"
    fi
}

# Copy models/<bundle> to $PREFIX/models/<bundle>, replacing the old copy in one rename. A model.om
# converted on this board is carried over when the network (model.yaml files:) is unchanged.
install_bundle() {
    local src=$SRC_DIR/models/$BUNDLE dest staging old om=none
    dest=$(t "$PREFIX/models/$BUNDLE")
    staging=$(t "$PREFIX/models/.$BUNDLE.new")
    old=$(t "$PREFIX/models/.$BUNDLE.old")
    if [ -f "$src/model.om" ]; then
        om=shipped
    elif [ -f "$dest/model.om" ]; then
        if same_network "$src/model.yaml" "$dest/model.yaml"; then om=kept; else om=stale; fi
    fi
    info "model bundle $BUNDLE -> $PREFIX/models/$BUNDLE"
    run rm -rf "$staging" "$old"
    run cp -R "$src" "$staging"
    case "$om" in
        kept)
            info "keeping the model.om converted earlier (same network)"
            run cp -p "$dest/model.om" "$staging/model.om"
            ;;
        stale) warn "the network changed: the old model.om is stale and is not kept" ;;
    esac
    if [ "$SIM" -eq 0 ] && { [ "$om" = none ] || [ "$om" = stale ]; }; then
        warn "no model.om for $BUNDLE: the NPU runs .om models only. Convert it with ATC" \
            "(models/$BUNDLE/convert_om.sh on a machine with the CANN toolkit; docs/DEPLOY.md)" \
            "and run install.sh again; until then the service cannot start on runtime acl."
    fi
    run chmod -R u=rwX,go=rX "$staging"
    if [ -d "$dest" ]; then run mv "$dest" "$old"; fi
    run mv "$staging" "$dest"
    run rm -rf "$old"
}

same_network() {
    [ -f "$1" ] && [ -f "$2" ] && [ "$(network_hash "$1")" = "$(network_hash "$2")" ]
}

# The hashes of everything ATC turns into model.om: the network, the AIPP config and the conversion script.
# (model.yaml may wrap its files: mapping over several lines, so lines are joined first.)
network_hash() {
    tr '\n' ' ' < "$1" | grep -oE '(model\.onnx|aipp\.cfg|convert_om\.sh):[[:space:]]*[0-9a-fA-F]{64}' \
        | tr -d ' ' | sort | tr '\n' ' '
}

# Set dotted keys in a YAML text, keeping comments and layout (the template documents every key).
render_config() {
    local runtime=$1
    shift
    "$PYTHON" - "$SRC_DIR/config/vessel-seg.yaml" "data_dir=$DATA_DIR" \
        "model.bundle=$PREFIX/models/$BUNDLE" "device.runtime=$runtime" "$@" <<'PYEOF'
import re
import sys

path, assignments = sys.argv[1], sys.argv[2:]
wanted = dict(a.split("=", 1) for a in assignments)
key_re = re.compile(r"^(\s*)([A-Za-z0-9_]+):(\s*)(.*)$")
stack = []  # (indent, key) of the enclosing mappings
out, done = [], set()
with open(path) as fh:
    lines = fh.read().splitlines()
for line in lines:
    m = key_re.match(line)
    if not m or line.lstrip().startswith("#"):
        out.append(line)
        continue
    indent, key, rest = len(m.group(1)), m.group(2), m.group(4)
    while stack and stack[-1][0] >= indent:
        stack.pop()
    dotted = ".".join([k for _, k in stack] + [key])
    if dotted in wanted:
        line = "%s%s: %s" % (m.group(1), key, wanted[dotted])
        done.add(dotted)
    elif rest == "" or rest.startswith("#"):
        stack.append((indent, key))
    out.append(line)
missing = sorted(set(wanted) - done)
if missing:
    sys.exit("config template %s lacks %s" % (path, ", ".join(missing)))
sys.stdout.write("\n".join(out) + "\n")
PYEOF
}

install_config() {
    local runtime=acl conf dist rendered
    [ "$SIM" -eq 1 ] && runtime=sim
    conf=$(t "$ETC_DIR/config.yaml")
    dist=$(t "$ETC_DIR/config.yaml.dist")
    rendered=$(render_config "$runtime") || die "cannot render the configuration from config/vessel-seg.yaml"
    # The shipped defaults with this board's settings, for comparing after an upgrade.
    printf '%s\n' "$rendered" | write_file "$dist" 0644
    if [ -e "$conf" ]; then
        info "keeping existing $ETC_DIR/config.yaml (new defaults: $ETC_DIR/config.yaml.dist)"
    else
        # The page shows patient data: a fresh config gets its own access token (web.token), readable
        # only by the service (mode 0600). The .dist copy above never holds it.
        local token
        token=$("$PYTHON" -c 'import secrets; print(secrets.token_urlsafe(32))') || die "cannot generate a token"
        rendered=$(render_config "$runtime" "web.token=$token") ||
            die "cannot render the configuration from config/vessel-seg.yaml"
        info "writing $ETC_DIR/config.yaml (runtime $runtime) with a new web access token"
        printf '%s\n' "$rendered" | write_file "$conf" 0600
        root_action chown "$SERVICE_USER:$SERVICE_USER" "$ETC_DIR/config.yaml"
        info "the status page's access token is web.token in $ETC_DIR/config.yaml; read it with:"
        info "  sudo grep '^  token:' $ETC_DIR/config.yaml"
    fi
    if [ "$DRY_RUN" -eq 0 ] && [ -x "$(t "$PREFIX/venv/bin/vessel-seg")" ]; then
        "$(t "$PREFIX/venv/bin/vessel-seg")" validate-config "$conf" >/dev/null ||
            die "$ETC_DIR/config.yaml is invalid: $(t "$PREFIX/venv/bin/vessel-seg") validate-config $conf"
    fi
}

# systemd reads KEY=VALUE lines; values are double-quoted with \ and " escaped.
install_cann_env() {
    local kv value
    {
        printf '# Generated by install.sh on %s; regenerated on every install.\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        if [ "$SIM" -eq 1 ]; then
            printf '# --sim: no CANN environment (runtime sim).\n'
        else
            printf '# Captured from %s (systemd does not source shell scripts).\n' "${CANN_SETENV#"$ROOT"}"
            printf '# CANN version: %s\n' "${CANN_VERSION:-unknown}"
            for kv in "${CANN_ENV[@]}"; do
                value=${kv#*=}
                value=${value//\\/\\\\}
                value=${value//\"/\\\"}
                printf '%s="%s"\n' "${kv%%=*}" "$value"
            done
        fi
    } | write_file "$(t "$ETC_DIR/cann.env")" 0644
}

install_unit() {
    local dropin_dir
    info "systemd unit $UNIT_DIR/$APP.service"
    run install -d -m 0755 "$(t "$UNIT_DIR")"
    run install -m 0644 "$SRC_DIR/systemd/$APP.service" "$(t "$UNIT_DIR/$APP.service")"
    dropin_dir=$(t "$UNIT_DIR/$APP.service.d")
    case "${CANN_SETENV#"$ROOT"}" in
        /home/* | /root/*)
            if [ "$SIM" -eq 0 ]; then
                info "CANN lives under a home directory: ProtectHome=read-only (drop-in)"
                run install -d -m 0755 "$dropin_dir"
                printf '%s\n' "# install.sh: the CANN is in ${CANN_SETENV#"$ROOT"}; the service must read it." \
                    "[Service]" "ProtectHome=read-only" | write_file "$dropin_dir/10-cann-home.conf" 0644
                return 0
            fi
            ;;
    esac
    if [ -f "$dropin_dir/10-cann-home.conf" ]; then
        run rm -f "$dropin_dir/10-cann-home.conf"
    fi
}

systemd_running() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }

start_service() {
    if [ -n "$ROOT" ]; then
        root_action systemctl daemon-reload
        root_action systemctl enable "$APP.service"
        [ "$NO_START" -eq 1 ] || root_action systemctl restart "$APP.service"
        return 0
    fi
    if ! systemd_running; then
        info "systemd is not running here (chroot/container): enabling only"
        run systemctl enable "$APP.service"
        return 0
    fi
    run systemctl daemon-reload
    run systemctl enable "$APP.service"
    if [ "$NO_START" -eq 1 ]; then
        info "not starting (--no-start): systemctl start $APP"
        return 0
    fi
    info "starting $APP (restart when already running)"
    run systemctl restart "$APP.service" || {
        systemctl --no-pager status "$APP.service" >&2 || true
        die "$APP failed to start: journalctl -u $APP -n 100"
    }
    [ "$DRY_RUN" -eq 1 ] || check_health
}

# The status page's /healthz (web.host/web.port from the config), retried for up to $HEALTH_TIMEOUT s.
check_health() {
    local conf host port enabled url i
    conf=$ETC_DIR/config.yaml
    read -r enabled host port < <("$PREFIX/venv/bin/python" -c '
import sys
from vessel_seg.pipeline.appliance.config import load_config
w = load_config(sys.argv[1])["web"]
print(int(bool(w["enabled"])), w["host"], w["port"])' "$conf") || die "cannot read web settings from $conf"
    if [ "$enabled" != 1 ] || [ "$port" = 0 ]; then
        info "status page disabled or on a random port: checking systemctl is-active only"
        systemctl is-active --quiet "$APP.service" || die "$APP is not active: journalctl -u $APP -n 100"
        return 0
    fi
    case "$host" in 0.0.0.0 | '' | '::' | '*') host=127.0.0.1 ;; esac
    case "$host" in *:*) host="[$host]" ;; esac
    url="http://$host:$port/healthz"
    info "waiting for $url (up to $HEALTH_TIMEOUT s)"
    for ((i = 0; i < HEALTH_TIMEOUT; i += 2)); do
        if "$PREFIX/venv/bin/python" -c '
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()' "$url" >/dev/null 2>&1; then
            info "healthy: $url"
            return 0
        fi
        case "$(systemctl is-active "$APP.service" 2>/dev/null || true)" in
            failed | inactive) break ;;
        esac
        sleep 2
    done
    systemctl --no-pager status "$APP.service" >&2 || true
    journalctl -u "$APP" -n 40 --no-pager >&2 || true
    die "$APP did not become healthy at $url within $HEALTH_TIMEOUT s (vessel-seg doctor --config $conf)"
}

start_actions_file() {
    [ -n "$ROOT" ] || return 0
    ACTIONS_FILE=$(t "$ETC_DIR/install-actions.sh")
    if [ "$DRY_RUN" -eq 1 ]; then return 0; fi
    mkdir -p "$(dirname "$ACTIONS_FILE")"
    {
        printf '#!/bin/sh\n'
        printf '# Root-only steps of "install.sh --root %s", recorded %s.\n' "$ROOT" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
        printf '# Run this as root on the target system to complete the staged installation.\n'
        printf 'set -e\n'
    } >"$ACTIONS_FILE"
    chmod 0700 "$ACTIONS_FILE"
}

do_install() {
    check_source_tree
    detect_platform
    if [ "$SIM" -eq 0 ]; then
        find_cann
        capture_cann_env
        check_npu_devices
    else
        info "--sim: skipping the CANN and NPU checks (runtime sim)"
    fi
    choose_python
    check_venv_support
    start_actions_file
    ensure_user
    make_directories
    install_package
    install_bundle
    install_config
    install_cann_env
    install_unit
    start_service
    info "done${ROOT:+ (staged under $ROOT; root-only steps in $ACTIONS_FILE)}"
    [ "$DRY_RUN" -eq 0 ] || info "dry run: nothing was changed"
}

# ----------------------------------------------------------------------------------------- uninstall
do_uninstall() {
    start_actions_file
    info "uninstalling $APP${ROOT:+ from $ROOT}"
    if [ -n "$ROOT" ]; then
        root_shell "systemctl disable --now $APP.service || true"
    elif [ -f "$UNIT_DIR/$APP.service" ] && systemd_running; then
        run systemctl disable --now "$APP.service" || warn "could not stop/disable $APP"
    elif [ -f "$UNIT_DIR/$APP.service" ]; then
        run systemctl disable "$APP.service" || warn "could not disable $APP"
    fi
    run rm -f "$(t "$UNIT_DIR/$APP.service")"
    run rm -rf "$(t "$UNIT_DIR/$APP.service.d")"
    if systemd_running || [ -n "$ROOT" ]; then
        root_action systemctl daemon-reload
    fi
    run rm -rf "$(t "$PREFIX")"
    if [ "$PURGE" -eq 1 ]; then
        info "--purge: removing configuration, data and the $SERVICE_USER user"
        run rm -rf "$(t "$DATA_DIR")"
        if [ -n "$ROOT" ]; then
            # keep the actions file (in $ETC_DIR) until the very end
            run find "$(t "$ETC_DIR")" -mindepth 1 ! -name install-actions.sh -exec rm -rf {} +
        else
            run rm -rf "$ETC_DIR"
        fi
        if [ -n "$ROOT" ] || id -u "$SERVICE_USER" >/dev/null 2>&1; then
            root_shell "! id -u $SERVICE_USER >/dev/null 2>&1 || userdel $SERVICE_USER"
        fi
    else
        info "kept $ETC_DIR (configuration) and $DATA_DIR (results); --uninstall --purge removes them"
    fi
    info "uninstalled"
}

main() {
    parse_args "$@"
    check_privileges
    if [ "$UNINSTALL" -eq 1 ]; then
        do_uninstall
    else
        do_install
    fi
}

main "$@"
