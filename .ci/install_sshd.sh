#!/usr/bin/env bash
# Install the OpenSSH server and client used by tests/test_remote_ssh.py (a real sshd on 127.0.0.1 with
# throwaway keys). Does nothing when both are present; needs root (or sudo) only when installing.
set -euo pipefail

if command -v ssh >/dev/null 2>&1 && { command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ]; }; then
    echo "install_sshd: OpenSSH server and client already installed"
    exit 0
fi

bash "$(dirname "$0")/apt_install.sh" install_sshd openssh-server openssh-client
echo "install_sshd: installed $(/usr/sbin/sshd -V 2>&1 | head -1)"
