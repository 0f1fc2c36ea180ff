# shellcheck shell=bash
# Setup shared by scripts/test-all and scripts/demo: Debian packages and the project's .venv.
# Source it from the repository root; it defines functions only.

# Debian packages the tests need, and a program each one provides (to skip apt when present).
SL_TEST_PACKAGES=(gnome-keyring dbus libsecret-tools tmux prometheus postgresql-15 pass e2fsprogs)
SL_TEST_PROGRAMS=(
    gnome-keyring-daemon dbus-daemon secret-tool tmux promtool
    /usr/lib/postgresql/15/bin/initdb pass chattr
)

sl_header() {
    printf '\n==> %s\n' "$*"
}

sl_die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# The programs among "$@" that are missing (on PATH, or by absolute path).
sl_missing_programs() {
    local p
    for p in "$@"; do
        if [[ $p == /* ]]; then
            [[ -x $p ]] || printf '%s\n' "$p"
        else
            command -v "$p" >/dev/null 2>&1 || printf '%s\n' "$p"
        fi
    done
}

# Run as root: directly when we are root, through sudo otherwise.
sl_as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        sl_die "need root to run '$*': run as root or install sudo"
    fi
}

# apt-get update + install "$@" without prompts, without starting the packages' services
# (prometheus, postgresql), and quietly: the log is printed only when apt fails.
sl_apt_install() {
    command -v apt-get >/dev/null 2>&1 ||
        sl_die "apt-get not found: install these Debian packages by hand: $*"
    local log policy_added=0 rc=0
    log=$(mktemp)
    # A policy-rc.d that says 101 keeps invoke-rc.d from starting services during the install.
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        sl_as_root sh -c 'printf "#!/bin/sh\nexit 101\n" >/usr/sbin/policy-rc.d &&
            chmod 755 /usr/sbin/policy-rc.d' && policy_added=1
    fi
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300)
    echo "apt-get update && apt-get install $* (log: $log)"
    if ! sl_as_root "${apt[@]}" update >"$log" 2>&1; then
        rc=1
    elif ! sl_as_root "${apt[@]}" install -y --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        "$@" </dev/null >>"$log" 2>&1; then
        rc=1
    fi
    if [[ $policy_added -eq 1 ]]; then
        sl_as_root rm -f /usr/sbin/policy-rc.d
    fi
    if [[ $rc -ne 0 ]]; then
        echo "apt-get failed; last lines of $log:" >&2
        tail -n 60 "$log" >&2
        return 1
    fi
    rm -f "$log"
}

# Install the test packages unless every program they provide is already there.
sl_ensure_test_packages() {
    local missing
    missing=$(sl_missing_programs "${SL_TEST_PROGRAMS[@]}")
    if [[ -z $missing ]]; then
        echo "system packages: all present"
        return 0
    fi
    echo "missing: $(echo "$missing" | tr '\n' ' ')"
    sl_apt_install "${SL_TEST_PACKAGES[@]}"
    missing=$(sl_missing_programs "${SL_TEST_PROGRAMS[@]}")
    [[ -z $missing ]] || sl_die "still missing after apt-get install: $missing"
}

# A python3 >= 3.11 that can create virtualenvs (Debian splits venv out into python3-venv).
sl_python() {
    if ! command -v python3 >/dev/null 2>&1; then
        sl_apt_install python3 python3-venv >&2 || sl_die "could not install python3"
    fi
    python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        sl_die "python3 is $(python3 --version 2>&1); secrets-ledger needs 3.11 or newer"
    command -v python3
}

# Create (or repair) .venv and install the project editable with the given extras ("test",
# or "" for none). Skips pip when pyproject.toml, the python and the extras are unchanged.
# Puts .venv/bin first on PATH.
sl_ensure_venv() {
    local extras=$1 venv=.venv python spec stamp want
    python=$(sl_python)
    if [[ -d $venv ]] && ! "$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        >/dev/null 2>&1; then
        echo "$venv is broken: recreating it"
        rm -rf "$venv"
    fi
    if [[ ! -d $venv ]]; then
        echo "creating $venv with $python"
        if ! "$python" -m venv "$venv" >/dev/null 2>&1; then
            rm -rf "$venv"
            local ver
            ver=$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
            sl_apt_install python3-venv "python$ver-venv" ||
                sl_die "python3 -m venv needs Debian's python3-venv"
            "$python" -m venv "$venv" || sl_die "python3 -m venv $venv failed"
        fi
    fi
    export VIRTUAL_ENV=$PWD/$venv
    export PATH="$VIRTUAL_ENV/bin:$PATH"
    spec=.
    [[ -n $extras ]] && spec=".[$extras]"
    want="$(sha256sum pyproject.toml | cut -d' ' -f1) $PWD $("$venv/bin/python" --version 2>&1)"
    # A test install includes everything a plain one has.
    for stamp in "$venv/.installed-$extras" "$venv/.installed-test"; do
        if [[ -f $stamp && $(cat "$stamp") == "$want" ]]; then
            echo "$venv: up to date ($spec)"
            return 0
        fi
    done
    echo "pip install -e '$spec' into $venv"
    local log rc=0
    log=$(mktemp)
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" \
        >"$log" 2>&1 || rc=$?
    # Some machines' pip.conf names local indexes that may be absent: drop those warnings.
    grep -v "is ignored: it is neither a file nor a directory" "$log" || true
    rm -f "$log"
    [[ $rc -eq 0 ]] || sl_die "pip install -e '$spec' failed (exit $rc)"
    printf '%s\n' "$want" >"$venv/.installed-$extras"
}
