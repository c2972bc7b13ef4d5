#!/usr/bin/env bash
# Install the OpenSSH server and client used by tests/test_remote_ssh.py (a real sshd on 127.0.0.1 with
# throwaway keys). Does nothing when both are present; needs root (or sudo) only when installing.
set -euo pipefail

if command -v ssh >/dev/null 2>&1 && { command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; }; then
    echo "install_sshd: OpenSSH server and client already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_sshd: need root or sudo to install openssh-server" >&2; exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
echo "install_sshd: installed $(/usr/sbin/sshd -V 2>&1 | head -1)"
