if [ "$(tty)" = /dev/tty1 ]; then
  echo "T $(cut -d' ' -f1 /proc/uptime) logged-in session=$XDG_SESSION_ID" > /dev/ttyS0
  mutter --wayland --display-server > /tmp/mutter.log 2>&1 &
  for i in $(seq 1 600); do [ -S "$XDG_RUNTIME_DIR/wayland-0" ] && break; sleep 0.1; done
  echo "T $(cut -d' ' -f1 /proc/uptime) mutter-socket $(ls $XDG_RUNTIME_DIR)" > /dev/ttyS0
  sleep 3; WAYLAND_DISPLAY=wayland-0 wayland-info 2>&1 | grep -A2 "wl_output\|xdg_output" > /dev/ttyS0
  tail -15 /tmp/mutter.log > /dev/ttyS0
  echo DONE-EXPERIMENT > /dev/ttyS0
fi
