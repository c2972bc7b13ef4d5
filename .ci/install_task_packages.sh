#!/usr/bin/env bash
# Install the Debian packages the real-image built-in tasks are made from (dass_edge/data/packaged.py):
# fonts-noto-color-emoji (emoji-* tasks), mate-backgrounds (photo-crops; emoji backgrounds),
# plasma-workspace-wallpapers (photo-plasma) and lomiri-wallpapers-16.04 (photo-lomiri).
# Does nothing when all are present; needs root (or sudo) only when installing.
set -euo pipefail

if [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] && [ -f /usr/share/backgrounds/mate/nature/Aqua.jpg ] \
   && [ -f /usr/share/wallpapers/Path/contents/images/2560x1600.jpg ] \
   && [ -f /usr/share/backgrounds/life_by_Aitzol_Berasategi.jpg ]; then
    echo "install_task_packages: already installed"
    exit 0
fi

bash "$(dirname "$0")/apt_install.sh" install_task_packages fonts-noto-color-emoji mate-backgrounds \
    plasma-workspace-wallpapers lomiri-wallpapers-16.04
echo "install_task_packages: installed fonts-noto-color-emoji, mate-backgrounds, plasma-workspace-wallpapers and" \
     "lomiri-wallpapers-16.04"
