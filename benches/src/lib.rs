//! `pvmouse-benches`: the end-to-end benchmark that compares pvmouse with QEMU's virtio-tablet
//! and usb-tablet in real VMs (the micro-benchmarks live in `benches/benches/`).

#![forbid(unsafe_code)]

pub mod cdf_plot;
pub mod desktop_path;
pub mod environment;
pub mod figures;
#[cfg(test)]
mod fixtures;
pub mod host_cpu;
pub mod input_commands;
pub mod kinds;
pub mod latency;
pub mod many_vms;
pub mod report;
pub mod run;
pub mod vnc_path;
