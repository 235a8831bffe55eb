# shellcheck shell=bash
# The Debian 12 packages kiln needs to build, run and test, and installing the missing ones.
# Sourced, not run.

KILN_APT_PACKAGES=(
    # build
    build-essential cmake pkg-config clang-format
    libfcgi-dev libcgicc-dev libmariadb-dev nlohmann-json3-dev libmagic-dev libmagic-mgc
    libssl-dev libtomlplusplus-dev libcli11-dev libgtest-dev libsystemd-dev libfmt-dev
    libcurl4-openssl-dev
    # the stack
    mariadb-server mariadb-client nginx-light
    # converters
    ffmpeg libvips-tools imagemagick
    # tests and benchmarks; systemd only for `systemd-analyze verify` of the unit files,
    # libfcgi-bin for cgi-fcgi (talking FastCGI to a kiln-api without nginx)
    curl wrk systemd libfcgi-bin
    # fuzzing: libFuzzer and the sanitizer runtimes (clang 16: the oldest whose libstdc++ 12
    # std::expected works, see tests/fuzz/targets/CMakeLists.txt)
    clang-16 libclang-rt-16-dev
)

# Prints the packages of KILN_APT_PACKAGES that are not installed, one per line.
missing_packages() {
    local pkg status
    for pkg in "${KILN_APT_PACKAGES[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Abbrev}' "$pkg" 2>/dev/null || true)
        [[ $status == ii* ]] || printf '%s\n' "$pkg"
    done
}

# Installs what is missing; does nothing (and never touches the network) when all is there.
install_missing() {
    local missing
    mapfile -t missing < <(missing_packages)
    ((${#missing[@]} > 0)) || return 0
    require_root
    log "installing ${missing[*]}"
    # In a subshell so that its traps (removing our policy-rc.d) cannot clobber the caller's.
    (
        # Packages such as mariadb-server and nginx start their system service on install;
        # the stack runs its own private instances, so forbid that while apt runs. An existing
        # policy-rc.d belongs to the machine and is left as it is.
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            trap 'rm -f /usr/sbin/policy-rc.d' EXIT
            trap 'exit 130' INT
            trap 'exit 143' TERM
            printf '#!/bin/sh\n# kiln scripts/lib/deps.sh: no service starts during install\nexit 101\n' \
                >/usr/sbin/policy-rc.d
            chmod 755 /usr/sbin/policy-rc.d
        fi
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -y -q --no-install-recommends "${missing[@]}"
    ) || die "apt-get install failed"
}
