#!/usr/bin/env bash
# Build, run and test taskscope on a Debian 12 machine, installing what is
# missing first (idempotent: nothing is reinstalled on a second run).
#
#   ./dev.sh run [taskscope run flags...]   build and run the agent (as root)
#   ./dev.sh test                           build and run the whole test suite
#   ./dev.sh bench                          run the benchmarks (as root)
#   ./dev.sh package                        build the Debian package (target/debian/)
#   ./dev.sh setup                          only install the prerequisites (all of them)
#
# Each command installs only what it needs. run (and every other command):
# clang (compiles the BPF programs), libelf-dev, zlib1g-dev, pkg-config and
# make (vendored libbpf), gcc (the C linker). bench adds zstd and DuckDB
# (for Python, and its CLI). test adds zstd, DuckDB, python3 and chromium
# (the tests parse and render flame graphs headless), systemd, man-db,
# groff-base and dpkg-dev (unit, man page and package tests) and cargo-deb;
# package adds dpkg-dev and cargo-deb (compiled once, about 3.5 minutes).
# Needs an existing Rust toolchain (cargo), as rustup installs it.
set -euo pipefail
cd "$(dirname "$0")"

# What building and running the agent needs.
RUN_PACKAGES=(clang libelf-dev zlib1g-dev pkg-config make gcc)
# What the benchmarks add (they read the files with zstdcat and DuckDB).
BENCH_PACKAGES=(zstd python3)
# What the test suite adds.
TEST_PACKAGES=(zstd python3 chromium systemd man-db groff-base dpkg-dev nodejs tmux openssl
    openjdk-17-jdk-headless)
# What building the Debian package adds.
PACKAGE_PACKAGES=(dpkg-dev)

say() { printf 'dev.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

require_root() {
    [ "$(id -u)" -eq 0 ] || die "'$1' must run as root: loading BPF programs needs CAP_BPF and CAP_PERFMON"
}

install_debian_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing Debian packages (${missing[*]}); run as root to install them"
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

pip_install() {
    # A distribution Python refuses system-wide installs (PEP 668); this is
    # a build machine, so say so explicitly in that case.
    python3 -m pip install -q "$@" 2>/dev/null \
        || python3 -m pip install -q --break-system-packages "$@"
}

install_duckdb() {
    command -v python3 >/dev/null || die "python3 is missing (apt-get install python3 python3-pip)"
    python3 -m pip --version >/dev/null 2>&1 || { [ "$(id -u)" -eq 0 ] && apt-get install -y -qq python3-pip >/dev/null; }
    python3 -c 'import duckdb' 2>/dev/null || { say "installing duckdb (Python)"; pip_install duckdb; }
    local scripts
    scripts="$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
    export PATH="$scripts:$HOME/.local/bin:$PATH"
    command -v duckdb >/dev/null || { say "installing the duckdb CLI"; pip_install duckdb-cli; }
    TASKSCOPE_DUCKDB="$(command -v duckdb)" || die "the duckdb CLI did not install"
    export TASKSCOPE_DUCKDB
}

find_cargo() {
    if ! command -v cargo >/dev/null && [ -f "$HOME/.cargo/env" ]; then
        # shellcheck disable=SC1091
        . "$HOME/.cargo/env"
    fi
    command -v cargo >/dev/null || die "cargo not found: install a Rust toolchain (1.94 or newer) with rustup"
}

# The S3 server of the --ship-to tests (tests/agent/ship.rs, fleet.rs): a
# real server process built from crates.io, cached by version (0.15 and
# later need a newer rustc). About 3 minutes once.
S3S_FS_VERSION=0.14.1
install_s3s_fs() {
    local root="${XDG_CACHE_HOME:-$HOME/.cache}/taskscope/s3s-fs-$S3S_FS_VERSION"
    if [ ! -x "$root/bin/s3s-fs" ]; then
        say "installing s3s-fs $S3S_FS_VERSION (cargo install, once)"
        cargo install --quiet s3s-fs --version "$S3S_FS_VERSION" --features binary --locked --root "$root"
    fi
    export TASKSCOPE_S3S_FS="$root/bin/s3s-fs"
}

# The fleet engines (tests/agent/fleet.rs, benches/fleet.rs) in their own
# venv, pinned: DuckDB reads S3 here only as 1.5.5 with the httpfs
# extension from PyPI (the CLI's own INSTALL needs extensions.duckdb.org);
# chDB is ClickHouse in-process.
FLEET_PIP=(duckdb==1.5.5 duckdb-extension-httpfs==1.5.5 chdb==4.4.0)
install_fleet_engines() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/taskscope/fleet-venv"
    if ! "$venv/bin/python" -c 'import duckdb, chdb, duckdb_extension_httpfs' 2>/dev/null; then
        say "installing ${FLEET_PIP[*]} into $venv (once)"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q "${FLEET_PIP[@]}"
    fi
    export TASKSCOPE_FLEET_PYTHON="$venv/bin/python"
}

# The browser driver of the web view's test (tests/agent/serve/):
# puppeteer-core pinned by tests/web/package-lock.json, `npm ci` into a
# cache directory keyed by the lock file's hash; it drives the system
# Chromium (no browser download).
install_web_driver() {
    local hash root
    hash=$(sha256sum tests/web/package-lock.json | cut -c1-12)
    root="${XDG_CACHE_HOME:-$HOME/.cache}/taskscope/web-driver-$hash"
    if [ ! -d "$root/node_modules/puppeteer-core" ]; then
        say "installing puppeteer-core into $root (npm ci, once)"
        mkdir -p "$root"
        cp tests/web/package.json tests/web/package-lock.json "$root/"
        (cd "$root" && npm ci --ignore-scripts --no-audit --no-fund --silent)
    fi
    export TASKSCOPE_WEB_DRIVER="$root"
}

install_cargo_deb() {
    # `cargo deb` builds the package; the package test runs it.
    cargo deb --version >/dev/null 2>&1 && return 0
    say "installing cargo-deb (cargo install cargo-deb --locked, once)"
    cargo install --quiet cargo-deb --locked
}

setup_run() {
    install_debian_packages "${RUN_PACKAGES[@]}"
    find_cargo
}

setup_bench() {
    install_debian_packages "${RUN_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
    install_duckdb
    find_cargo
    install_s3s_fs
    install_fleet_engines
}

setup_test() {
    install_debian_packages "${RUN_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    # Real containers for the identity tests (tests/agent/containers.rs).
    install_debian_packages runc busybox-static containerd
    install_duckdb
    find_cargo
    install_cargo_deb
    install_s3s_fs
    install_fleet_engines
    install_web_driver
}

setup_package() {
    install_debian_packages "${RUN_PACKAGES[@]}" "${PACKAGE_PACKAGES[@]}"
    find_cargo
    install_cargo_deb
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    setup)
        setup_test
        say "ready: $(clang --version | head -1); $(cargo --version); duckdb $("$TASKSCOPE_DUCKDB" --version)"
        ;;
    run)
        require_root run
        setup_run
        cargo build --release --locked
        exec ./target/release/taskscope run "$@"
        ;;
    test)
        require_root test
        setup_test
        cargo build --release --locked --all-targets
        log="$(mktemp)"
        trap 'rm -f "$log"' EXIT
        status=0
        cargo test --release --locked --lib --tests "$@" 2>&1 | tee "$log" || status=$?
        # One closing line for the whole suite (unit and integration tests).
        awk '/^test result:/ { p += $4; f += $6 } END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
        exit "$status"
        ;;
    bench)
        require_root bench
        setup_bench
        cargo bench --locked "$@"
        ;;
    package)
        setup_package
        cargo build --release --locked
        cargo deb --no-build --locked "$@"
        ;;
    *)
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0" >&2
        exit 2
        ;;
esac
