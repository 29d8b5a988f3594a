#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm /run /tmp; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp; mount -t tmpfs tmpfs /dev/shm
t() { echo "T $(cut -d' ' -f1 /proc/uptime) $*"; }
for m in virtio_gpu virtio_input evdev uinput virtio_console; do modprobe $m; done
/lib/systemd/systemd-udevd --daemon; udevadm trigger --action=add; udevadm settle
t udev-settled
seatd -g video > /tmp/seatd.log 2>&1 &
sleep 0.5
mkdir -p /run/user/1000; chown pvm /run/user/1000; chmod 700 /run/user/1000
su pvm -c 'XDG_RUNTIME_DIR=/run/user/1000 LIBSEAT_BACKEND=seatd WLR_LIBINPUT_NO_DEVICES=1 sway > /tmp/sway.log 2>&1 &'
for i in $(seq 1 300); do ls /run/user/1000/sway-ipc.* >/dev/null 2>&1 && break; sleep 0.1; done
t sway-ipc
sleep 2; su pvm -c 'SWAYSOCK=$(ls /run/user/1000/sway-ipc.* | head -1) swaymsg -t get_outputs' 2>&1 | grep -E "Output|Current mode|Position|Scale"
su pvm -c 'SWAYSOCK=$(ls /run/user/1000/sway-ipc.* | head -1) swaymsg output Virtual-1 mode 1024x768 pos 0 0, output Virtual-2 mode 1280x1024 pos 1024 0' 2>&1
su pvm -c 'SWAYSOCK=$(ls /run/user/1000/sway-ipc.* | head -1) swaymsg -t get_outputs' 2>&1 | grep -E "Output|Current mode|Position"
grep -iE "error" /tmp/sway.log | head -5; tail -3 /tmp/seatd.log
t sway-done
echo DONE-EXPERIMENT
poweroff -f
