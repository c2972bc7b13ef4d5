#!/usr/bin/env bash
# Install the Debian packages the real-image built-in tasks are made from (dass_edge/data/packaged.py):
# fonts-noto-color-emoji (emoji-* tasks) and mate-backgrounds (photo-crops; emoji backgrounds).
# Does nothing when both are present; needs root (or sudo) only when installing.
set -euo pipefail

if [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] && [ -f /usr/share/backgrounds/mate/nature/Aqua.jpg ]; then
    echo "install_task_packages: already installed"
    exit 0
fi

bash "$(dirname "$0")/apt_install.sh" install_task_packages fonts-noto-color-emoji mate-backgrounds
echo "install_task_packages: installed fonts-noto-color-emoji and mate-backgrounds"
