#!/usr/bin/env bash
# Install Debian packages for one CI step: `apt_install.sh STEP PACKAGE...` (STEP names the caller in messages).
# The one place for the root/sudo check and the apt flags, shared by install_sshd.sh and install_task_packages.sh.
set -euo pipefail
step=$1
shift

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "$step: need root or sudo to install $*" >&2; exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
