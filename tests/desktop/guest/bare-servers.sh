#!/bin/sh
# Experiment: which display servers start in this guest, and how fast.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /dev/shm
t() { echo "T $(cut -d' ' -f1 /proc/uptime) $*"; }
t init
for m in virtio_gpu virtio_input evdev uinput virtio_console; do modprobe $m; done
/lib/systemd/systemd-udevd --daemon; udevadm trigger --action=add; udevadm settle
t udev-settled
ls /dev/dri /dev/input
export XDG_RUNTIME_DIR=/run/user0; mkdir -p $XDG_RUNTIME_DIR; chmod 700 $XDG_RUNTIME_DIR
# Xorg
Xorg :0 vt1 -nolisten tcp -noreset > /tmp/xorg.log 2>&1 &
for i in $(seq 1 300); do DISPLAY=:0 xrandr >/dev/null 2>&1 && break; sleep 0.1; done
t xorg-ready
DISPLAY=:0 xrandr
DISPLAY=:0 xrandr --output Virtual-1 --mode 1024x768 --pos 0x0 --output Virtual-2 --mode 1280x1024 --pos 1024x0 && DISPLAY=:0 xrandr --listmonitors
kill %1; sleep 1; pkill Xorg; sleep 1
t xorg-done
# Weston
weston --tty=2 --backend=drm-backend.so --idle-time=0 > /tmp/weston.log 2>&1 &
for i in $(seq 1 300); do ls $XDG_RUNTIME_DIR/wayland-* >/dev/null 2>&1 && break; sleep 0.1; done
t weston-socket
sleep 2; WAYLAND_DISPLAY=wayland-1 wayland-info 2>&1 | grep -A3 "wl_output" | head -20; ls $XDG_RUNTIME_DIR
tail -20 /tmp/weston.log
pkill weston; sleep 2; rm -f $XDG_RUNTIME_DIR/wayland-*
t weston-done
# sway
WLR_LIBINPUT_NO_DEVICES=1 LIBSEAT_BACKEND=builtin sway -d > /tmp/sway.log 2>&1 &
for i in $(seq 1 300); do ls $XDG_RUNTIME_DIR/sway-ipc.* >/dev/null 2>&1 && break; sleep 0.1; done
t sway-ipc
sleep 2; SWAYSOCK=$(ls $XDG_RUNTIME_DIR/sway-ipc.* | head -1) swaymsg -t get_outputs 2>&1 | grep -E "Output|Current mode|Position" 
grep -iE "error|fail" /tmp/sway.log | head -10
pkill sway; sleep 2
t sway-done
# mutter
mutter --wayland --display-server > /tmp/mutter.log 2>&1 &
sleep 8; tail -15 /tmp/mutter.log
t mutter-tried
echo DONE-EXPERIMENT
poweroff -f
