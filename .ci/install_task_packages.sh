#!/usr/bin/env bash
# Install the Debian packages the real-image built-in tasks are made from (dass_edge/data/packaged.py):
# fonts-noto-color-emoji (emoji-* tasks) and mate-backgrounds (photo-crops; emoji backgrounds).
# Does nothing when both are present; needs root (or sudo) only when installing.
set -euo pipefail

if [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] && [ -f /usr/share/backgrounds/mate/nature/Aqua.jpg ]; then
    echo "install_task_packages: already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; else
        echo "install_task_packages: need root or sudo to install the task packages" >&2; exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends fonts-noto-color-emoji mate-backgrounds >/dev/null
echo "install_task_packages: installed fonts-noto-color-emoji and mate-backgrounds"
