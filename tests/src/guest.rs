//! A booted guest as a scenario drives it: shell commands that must succeed, waits on what they
//! print, and, with every failure, the logs of the guest programs under test.

use std::fmt::Display;
use std::ops::Deref;
use std::time::Duration;

use crate::desktop::{Head, Reader, Tour, check_raw_rows, wait_for_bridge};
use crate::exclusive::{self, ExclusiveVm};
use crate::qmp::Qmp;
use crate::vm::{Vm, VmConfig};

/// A test's own VM, with the shell command that shows its logs when a step fails.
#[derive(Debug)]
pub struct Guest {
    vm: ExclusiveVm,
    /// Prints the logs worth reading when a step fails.
    logs: &'static str,
    /// How long one step (a command, a wait on its output) may take.
    pub wait: Duration,
}

impl Deref for Guest {
    type Target = Vm;
    fn deref(&self) -> &Vm {
        &self.vm
    }
}

impl Guest {
    /// Boots a VM of its own (see [`exclusive::boot`]).
    pub fn boot(config: VmConfig, logs: &'static str, wait: Duration) -> Self {
        Self {
            vm: exclusive::boot(config),
            logs,
            wait,
        }
    }

    /// Boots a desktop VM of its own whose pvmouse has `displays` displays.
    pub fn desktop(displays: u32, logs: &'static str, wait: Duration) -> Self {
        Self::boot(
            VmConfig {
                desktop: true,
                displays,
                ..VmConfig::default()
            },
            logs,
            wait,
        )
    }

    /// What the `logs` command prints, or nothing if even that fails.
    pub fn logs(&self) -> String {
        self.vm
            .probe
            .run(self.logs, self.wait)
            .map(|(_, out)| out.join("\n"))
            .unwrap_or_default()
    }

    /// Fails the test with `error` and the guest's logs.
    pub fn fail(&self, error: impl Display) -> ! {
        panic!("{error}\n{}", self.logs())
    }

    /// A shell command in the guest that must succeed; its output lines.
    pub fn sh(&self, command: &str) -> Vec<String> {
        self.vm
            .probe
            .sh(command, self.wait)
            .unwrap_or_else(|e| self.fail(e))
    }

    /// A command retried until it succeeds with `want` in its output, for one step's time.
    pub fn until(&self, command: &str, want: &str) -> Vec<String> {
        self.until_within(command, want, self.wait)
    }

    /// [`Guest::until`] for at most `limit`.
    pub fn until_within(&self, command: &str, want: &str, limit: Duration) -> Vec<String> {
        self.vm
            .probe
            .sh_until(command, want, limit)
            .unwrap_or_else(|e| self.fail(e))
    }

    /// Starts the guest bridge in the background with `args` (its log in /tmp/guestd.log), and
    /// waits until the host hears it; returns the control connection that did.
    pub fn start_bridge(&self, args: &str) -> Qmp {
        self.sh(&format!(
            "/opt/pvmouse-guestd {args} >/tmp/guestd.log 2>&1 &"
        ));
        let mut ctl = self.control().unwrap_or_else(|e| self.fail(e));
        wait_for_bridge(&mut ctl, self.wait).unwrap_or_else(|e| self.fail(e));
        ctl
    }

    /// Waits until the session agent, started in the background with its log in
    /// /tmp/session.log, has applied the display server's layout.
    pub fn session_agent_applied(&self) {
        self.until("cat /tmp/session.log", "applied the layout");
    }

    /// Waits until `pvmouse-wl-reader`, started in the background with its log in
    /// [`crate::desktop::READER_LOG`], has its surfaces up; returns what it reports.
    pub fn reader_ready(&self) -> Reader<'_> {
        self.until(&format!("cat {}", crate::desktop::READER_LOG), "READY");
        Reader { vm: &self.vm }
    }

    /// One layout of a layout test, the layout just set: says what the session agent last
    /// applied, then visits every point and clicks on each head ([`Reader::visit`]).
    pub fn visit_layout(
        &self,
        reader: &Reader<'_>,
        ctl: &mut Qmp,
        layout: &'static str,
        heads: &[Head],
        outputs: &[usize],
        tour: &mut Tour,
    ) {
        let applied = self.sh("grep -h 'applied' /tmp/session.log | tail -n 1");
        println!("{layout}: {}", applied.join(""));
        reader.visit(ctl, layout, heads, outputs, tour);
    }

    /// The one-display check of `server` without the bridge, its reader ready: the raw
    /// device's points land on their pixels (see [`Reader::raw_device_rows`]).
    pub fn check_raw_pointer(&self, server: &str, reader: &Reader<'_>) {
        let mut ctl = self.control().unwrap_or_else(|e| self.fail(e));
        let rows = reader.raw_device_rows(&mut ctl);
        check_raw_rows(server, &rows, &|| self.logs());
    }
}
