//! DRM hot-plug notices from the kernel's uevent netlink socket: no udev daemon needed, so it
//! works in minimal guests too.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A socket receiving the kernel's uevents (NETLINK_KOBJECT_UEVENT, multicast group 1).
pub fn uevent_socket() -> io::Result<File> {
    // SAFETY: socket() takes only integer arguments; the result is checked before use.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_KOBJECT_UEVENT,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_nl is plain data for which all-zero is a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    addr.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).map_err(io::Error::other)?;
    addr.nl_groups = 1;
    let socklen =
        libc::socklen_t::try_from(size_of::<libc::sockaddr_nl>()).map_err(io::Error::other)?;
    // SAFETY: addr is a valid, initialised sockaddr_nl and the length passed is its size.
    let rc = unsafe {
        libc::bind(
            owned.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            socklen,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(File::from(owned))
}

/// Whether one uevent datagram (`ACTION@DEVPATH\0KEY=VALUE\0...`) is a change on a DRM
/// device. The kernel's hot-plug uevents are such changes (with `HOTPLUG=1`); like
/// compositors, the bridge treats any DRM change as a reason to look at the outputs again.
pub fn is_drm_hotplug(message: &[u8]) -> bool {
    let mut drm = false;
    let mut change = false;
    for field in message.split(|b| *b == 0) {
        drm |= field == b"SUBSYSTEM=drm";
        change |= field == b"ACTION=change";
    }
    drm && change
}

/// Calls `on_hotplug` for every DRM hot-plug uevent, until it returns false or reading fails.
pub fn watch(mut socket: File, mut on_hotplug: impl FnMut() -> bool) {
    let mut buf = [0u8; 8192];
    while let Ok(n) = socket.read(&mut buf) {
        if is_drm_hotplug(&buf[..n]) && !on_hotplug() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_drm_hotplug_uevents_only() {
        let hotplug = b"change@/devices/pci0000:00/0000:00:04.0/virtio2/drm/card0\0ACTION=change\0\
                        DEVPATH=/devices/.../card0\0SUBSYSTEM=drm\0HOTPLUG=1\0DEVNAME=dri/card0\0";
        assert!(is_drm_hotplug(hotplug));
        assert!(!is_drm_hotplug(
            b"add@/devices/x/input/input3\0ACTION=add\0SUBSYSTEM=input\0"
        ));
        assert!(is_drm_hotplug(
            b"change@/x/card0\0ACTION=change\0SUBSYSTEM=drm\0SYNTH_UUID=0\0"
        ));
        assert!(!is_drm_hotplug(
            b"add@/x/card0\0ACTION=add\0SUBSYSTEM=drm\0"
        ));
        assert!(!is_drm_hotplug(b"libudev\0garbage"));
    }
}
