//! The guest's config space accesses, at any offset and size.

use super::PvMouse;
use crate::guest_fault::GuestFault;

impl PvMouse {
    /// Config reads at any offset and size: out-of-range ones get an empty answer, which the
    /// vhost-user layer reports to the frontend as a failed read.
    pub fn read_config(&self, offset: u32, size: u32) -> Vec<u8> {
        let mut core = self.core();
        match core.config.read(offset, size) {
            Ok(bytes) => bytes,
            Err(_) => {
                core.faults.record(GuestFault::ConfigOutOfBounds);
                Vec::new()
            }
        }
    }

    /// Config writes at any offset and size. Out-of-range writes are ignored: failing them
    /// would make vhost-user drop the whole frontend connection.
    pub fn write_config(&self, offset: u32, data: &[u8]) {
        let mut core = self.core();
        if core.config.write(offset, data).is_err() {
            core.faults.record(GuestFault::ConfigOutOfBounds);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use crate::device::PointerDevice;

    #[test]
    fn config_access_out_of_bounds_is_counted_not_fatal() {
        let dev = device();
        assert!(dev.read_config(130, 10).is_empty());
        dev.write_config(4000, &[1, 2, 3]);
        assert_eq!(dev.read_config(0, 136).len(), 136);
        assert_eq!(dev.status().guest_faults, vec![("config-out-of-bounds", 2)]);
    }
}
