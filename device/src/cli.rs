//! The command line, and the validated configuration it turns into.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use clap::Parser;
use pvmouse_spec::profile::{DEFAULT_NAME, DEFAULT_SERIAL};

use crate::identity::{Identity, IdentityError};
use crate::socket::{SocketAccess, resolve_group};

/// vhost-user backend for pvmouse: a paravirtual absolute pointer that knows which display it
/// is on. Attach it with QEMU's `vhost-user-input-pci`; feed it input over the QMP control
/// socket.
#[derive(Debug, Parser)]
#[command(name = "vhost-user-pvmouse", version, about)]
pub struct Cli {
    /// Listen for the vhost-user frontend (QEMU) on this Unix socket path. Not needed when
    /// systemd hands the socket over (socket activation: the one named `vhost-user`).
    #[arg(long, value_name = "PATH", conflicts_with = "fd")]
    pub socket_path: Option<PathBuf>,

    /// Use this inherited file descriptor as the listening vhost-user socket.
    #[arg(long, value_name = "FDNUM")]
    pub fd: Option<RawFd>,

    /// Also serve the relative device on this Unix socket path: a second vhost-user-input
    /// device (attach it to the same VM as the first) that takes relative motion while the host
    /// has the pointer in relative mode. With socket activation, the socket named `relative`.
    #[arg(long, value_name = "PATH", conflicts_with = "relative_fd")]
    pub relative_socket: Option<PathBuf>,

    /// Use this inherited file descriptor as the relative device's listening socket.
    #[arg(long, value_name = "FDNUM")]
    pub relative_fd: Option<RawFd>,

    /// Print the backend's capabilities as JSON and exit.
    #[arg(long)]
    pub print_capabilities: bool,

    /// Serve the QMP control protocol on this Unix socket path (mode 0600). With socket
    /// activation, the socket named `control` serves it instead.
    #[arg(long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,

    /// Let this group (name or number) connect to both sockets too: mode 0660 and this group,
    /// instead of 0600.
    #[arg(long, value_name = "GROUP")]
    pub socket_group: Option<String>,

    /// Number of displays the pointer can be on (1 to 16).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub displays: u32,

    /// Device name the guest sees (EVIOCGNAME), at most 63 printable ASCII characters.
    #[arg(long, default_value = DEFAULT_NAME)]
    pub name: String,

    /// Device serial the guest sees (EVIOCGUNIQ), at most 63 printable ASCII characters.
    #[arg(long, default_value = DEFAULT_SERIAL)]
    pub serial: String,

    /// Survive its own restarts (the default): a small keeper process holds the sockets and the
    /// frontend's connection, and runs the device in a worker it replaces whenever one ends (a
    /// crash, or `pvmouse-upgrade`), without the frontend noticing. Kept for command lines
    /// that say it.
    #[arg(long, conflicts_with = "single_process")]
    pub restartable: bool,

    /// Run the device in this one process, with no keeper: a crash or an upgrade then ends the
    /// device for the frontend (QEMU 10 cannot reattach vhost-user-input).
    #[arg(long)]
    pub single_process: bool,

    /// A worker's inherited state ledger, a memfd (set by the keeper; see [`Inherited`]).
    #[arg(
        long,
        value_name = "FDNUM",
        hide = true,
        conflicts_with = "restartable"
    )]
    pub ledger_fd: Option<RawFd>,

    /// A worker's inherited control listener (set by the keeper; see [`Inherited`]).
    #[arg(long, value_name = "FDNUM", hide = true, requires = "ledger_fd")]
    pub control_fd: Option<RawFd>,
}

/// What this process is, decided once from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `--single-process`: serves the frontend itself.
    Standalone,
    /// The default (`--restartable`): holds the sockets and the frontend's connection, and runs
    /// the device in workers it replaces ([`crate::keeper`]).
    Keeper,
    /// Started by a keeper: runs the device on what the keeper handed it, and may end on
    /// purpose for an upgrade.
    Worker(Inherited),
}

/// What a keeper hands each worker, by descriptor number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inherited {
    /// The state ledger, a memfd.
    pub ledger: RawFd,
    /// The control socket's listener, when there is a control socket.
    pub control: Option<RawFd>,
    /// The relative device's listener (the keeper's second private socket), when there is one.
    pub relative: Option<RawFd>,
}

impl Inherited {
    /// A worker's command line: its vhost-user listener (the keeper's private socket), what it
    /// inherits, and the device's identity. Written here, beside the parser that reads it.
    pub fn worker_args(&self, vhost_fd: RawFd, identity: &Identity) -> Vec<String> {
        let mut args = vec![
            "--fd".to_owned(),
            vhost_fd.to_string(),
            "--ledger-fd".to_owned(),
            self.ledger.to_string(),
            "--displays".to_owned(),
            identity.displays().to_string(),
            "--name".to_owned(),
            identity.name().to_owned(),
            "--serial".to_owned(),
            identity.serial().to_owned(),
        ];
        if let Some(control) = self.control {
            args.extend(["--control-fd".to_owned(), control.to_string()]);
        }
        if let Some(relative) = self.relative {
            args.extend(["--relative-fd".to_owned(), relative.to_string()]);
        }
        args
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VhostSocket {
    Path(PathBuf),
    Fd(RawFd),
}

/// Where the control socket listens: a path this process binds, or a listener it was handed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlSocket {
    Path(PathBuf),
    Fd(RawFd),
}

/// The `FileDescriptorName=` of the vhost-user socket in a systemd `.socket` unit.
pub const VHOST_USER_FD_NAME: &str = "vhost-user";
/// The `FileDescriptorName=` of the control socket.
pub const CONTROL_FD_NAME: &str = "control";
/// The `FileDescriptorName=` of the relative device's vhost-user socket (never taken unnamed).
pub const RELATIVE_FD_NAME: &str = "relative";

/// The listening sockets systemd handed over (socket activation: `LISTEN_FDS`, each named by
/// its `FileDescriptorName=`). Unnamed ones are taken in order: vhost-user, then control.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activated {
    pub vhost_user: Option<RawFd>,
    pub control: Option<RawFd>,
    pub relative: Option<RawFd>,
}

impl Activated {
    /// From the (descriptor, name) pairs `sd_listen_fds_with_names(3)` gives.
    pub fn from_named(fds: impl IntoIterator<Item = (RawFd, String)>) -> Result<Self, ConfigError> {
        let mut activated = Self::default();
        let mut unnamed = Vec::new();
        for (fd, name) in fds {
            let slot = match name.as_str() {
                VHOST_USER_FD_NAME => &mut activated.vhost_user,
                CONTROL_FD_NAME => &mut activated.control,
                RELATIVE_FD_NAME => &mut activated.relative,
                // systemd's name for a socket given none.
                "unknown" | "" => {
                    unnamed.push(fd);
                    continue;
                }
                _ => return Err(ConfigError::ActivatedName(name)),
            };
            if slot.replace(fd).is_some() {
                return Err(ConfigError::ActivatedTwice(name));
            }
        }
        for fd in unnamed {
            let slot = if activated.vhost_user.is_none() {
                &mut activated.vhost_user
            } else if activated.control.is_none() {
                &mut activated.control
            } else {
                return Err(ConfigError::ActivatedTooMany);
            };
            *slot = Some(fd);
        }
        Ok(activated)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub vhost_socket: VhostSocket,
    /// The relative device's vhost-user socket, if the backend serves one.
    pub relative_socket: Option<VhostSocket>,
    pub control_socket: Option<ControlSocket>,
    pub socket_access: SocketAccess,
    pub identity: Identity,
    pub role: Role,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error("one of --socket-path or --fd is required (or a socket handed over by systemd)")]
    NoSocket,
    #[error(
        "systemd handed over a socket named {0:?}: the names are `vhost-user`, `control` and \
         `relative`"
    )]
    ActivatedName(String),
    #[error("systemd handed over two sockets named {0:?}")]
    ActivatedTwice(String),
    #[error("systemd handed over more than two sockets: one vhost-user and one control socket")]
    ActivatedTooMany,
    #[error("systemd handed over the {0} socket, and {1} names another: give one")]
    ActivatedAndGiven(&'static str, &'static str),
    #[error("--fd {0} is not a valid descriptor number")]
    BadFd(RawFd),
    #[error("--socket-group {0}: no such group (not a number, and not in /etc/group)")]
    UnknownGroup(String),
    #[error("two sockets are both {0}: give each socket its own path")]
    SamePath(PathBuf),
}

/// Whether two socket paths name the same file: literally, or through their directories.
fn same_socket_path(a: &Path, b: &Path) -> bool {
    let resolved = |p: &Path| {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(p.file_name()?))
    };
    a == b || resolved(a).is_some_and(|r| Some(r) == resolved(b))
}

impl TryFrom<Cli> for Config {
    type Error = ConfigError;

    fn try_from(cli: Cli) -> Result<Self, ConfigError> {
        Config::new(cli, Activated::default())
    }
}

impl Config {
    /// The configuration from the command line and the sockets systemd handed over.
    pub fn new(cli: Cli, activated: Activated) -> Result<Self, ConfigError> {
        let relative_socket = match (cli.relative_socket, cli.relative_fd, activated.relative) {
            (Some(_), _, Some(_)) => {
                return Err(ConfigError::ActivatedAndGiven(
                    "relative",
                    "--relative-socket",
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(ConfigError::ActivatedAndGiven("relative", "--relative-fd"));
            }
            (Some(p), _, None) => Some(VhostSocket::Path(p)),
            (None, Some(fd), None) if fd >= 0 => Some(VhostSocket::Fd(fd)),
            (None, Some(fd), None) => return Err(ConfigError::BadFd(fd)),
            (None, None, fd) => fd.map(VhostSocket::Fd),
        };
        let identity = Identity::new(&cli.name, &cli.serial, cli.displays)?
            .with_relative(relative_socket.is_some());
        let vhost_socket = match (cli.socket_path, cli.fd, activated.vhost_user) {
            (Some(_), _, Some(_)) => {
                return Err(ConfigError::ActivatedAndGiven(
                    "vhost-user",
                    "--socket-path",
                ));
            }
            (None, Some(_), Some(_)) => {
                return Err(ConfigError::ActivatedAndGiven("vhost-user", "--fd"));
            }
            (Some(p), _, None) => VhostSocket::Path(p),
            (None, Some(fd), None) if fd >= 0 => VhostSocket::Fd(fd),
            (None, Some(fd), None) => return Err(ConfigError::BadFd(fd)),
            (None, None, Some(fd)) => VhostSocket::Fd(fd),
            (None, None, None) => return Err(ConfigError::NoSocket),
        };
        let control_socket = match (cli.control_socket, activated.control) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::ActivatedAndGiven(
                    "control",
                    "--control-socket",
                ));
            }
            (Some(path), None) => Some(ControlSocket::Path(path)),
            (None, Some(fd)) => Some(ControlSocket::Fd(fd)),
            (None, None) => None,
        };
        let paths: Vec<&PathBuf> = [
            match &vhost_socket {
                VhostSocket::Path(p) => Some(p),
                VhostSocket::Fd(_) => None,
            },
            match &control_socket {
                Some(ControlSocket::Path(p)) => Some(p),
                _ => None,
            },
            match &relative_socket {
                Some(VhostSocket::Path(p)) => Some(p),
                _ => None,
            },
        ]
        .into_iter()
        .flatten()
        .collect();
        for (i, a) in paths.iter().enumerate() {
            if let Some(b) = paths[i + 1..].iter().find(|b| same_socket_path(a, b)) {
                return Err(ConfigError::SamePath((*b).clone()));
            }
        }
        let group = match cli.socket_group {
            Some(g) => Some(resolve_group(&g).ok_or(ConfigError::UnknownGroup(g))?),
            None => None,
        };
        // The parser has refused a ledger with `--restartable`, and a control listener without
        // a ledger.
        let role = match cli.ledger_fd {
            Some(ledger) => Role::Worker(Inherited {
                ledger,
                control: cli.control_fd,
                relative: cli.relative_fd,
            }),
            None if cli.single_process => Role::Standalone,
            None => Role::Keeper,
        };
        Ok(Config {
            vhost_socket,
            relative_socket,
            control_socket,
            socket_access: SocketAccess { group },
            identity,
            role,
        })
    }
}

/// The `--print-capabilities` answer, per QEMU's docs/interop/vhost-user.json. pvmouse has none
/// of the optional input features (`evdev-path`, `no-grab`): it reads no host evdev device.
pub fn capabilities_json() -> &'static str {
    r#"{"type": "input", "features": []}"#
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Config, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("vhost-user-pvmouse").chain(args.iter().copied()))
                .map_err(|e| e.to_string())?;
        Config::try_from(cli).map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_the_conventional_options() {
        let c = parse(&["--socket-path", "/tmp/v.sock", "--displays", "2"]).unwrap();
        assert_eq!(c.vhost_socket, VhostSocket::Path("/tmp/v.sock".into()));
        assert_eq!(c.identity.displays(), 2);
        let c = parse(&["--fd", "3", "--control-socket", "/tmp/c", "--name", "seat1"]).unwrap();
        assert_eq!(c.vhost_socket, VhostSocket::Fd(3));
        assert_eq!(c.identity.name(), "seat1");
        assert!(Cli::try_parse_from(["x", "--print-capabilities"]).is_ok());
        assert_eq!(c.socket_access, SocketAccess { group: None });
        let c = parse(&["--socket-path", "a", "--socket-group", "root"]).unwrap();
        assert_eq!(c.socket_access, SocketAccess { group: Some(0) });
        assert_eq!(c.role, Role::Keeper, "restartable by default");
        let c = parse(&["--socket-path", "a", "--restartable"]).unwrap();
        assert_eq!(c.role, Role::Keeper);
        let c = parse(&["--socket-path", "a", "--single-process"]).unwrap();
        assert_eq!(c.role, Role::Standalone);
        assert!(parse(&["--socket-path", "a", "--single-process", "--restartable"]).is_err());
    }

    #[test]
    fn a_worker_reads_back_the_command_line_its_keeper_writes() {
        for (control, relative) in [(None, None), (Some(7), None), (Some(7), Some(8))] {
            let identity = Identity::new("seat 1", "s-2", 3)
                .unwrap()
                .with_relative(relative.is_some());
            let inherited = Inherited {
                ledger: 6,
                control,
                relative,
            };
            let args = inherited.worker_args(5, &identity);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let c = parse(&args).unwrap();
            assert_eq!(c.role, Role::Worker(inherited));
            assert_eq!(c.vhost_socket, VhostSocket::Fd(5));
            assert_eq!(c.relative_socket, relative.map(VhostSocket::Fd));
            assert_eq!(c.identity, identity);
            assert_eq!(c.control_socket, None);
        }
    }

    fn named(list: &[(RawFd, &str)]) -> Result<Activated, String> {
        Activated::from_named(list.iter().map(|(fd, n)| (*fd, (*n).to_owned())))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn sockets_handed_over_by_systemd_are_told_apart_by_name_or_order() {
        let both = Activated {
            vhost_user: Some(3),
            control: Some(4),
            relative: None,
        };
        assert_eq!(named(&[(3, "vhost-user"), (4, "control")]).unwrap(), both);
        let three = named(&[(3, "unknown"), (5, "relative"), (4, "control")]).unwrap();
        assert_eq!(three.relative, Some(5));
        assert_eq!((three.vhost_user, three.control), (Some(3), Some(4)));
        assert_eq!(named(&[(4, "control"), (3, "vhost-user")]).unwrap(), both);
        assert_eq!(named(&[(3, "unknown"), (4, "unknown")]).unwrap(), both);
        assert_eq!(named(&[(4, "control"), (3, "unknown")]).unwrap(), both);
        assert_eq!(named(&[]).unwrap(), Activated::default());
        for (list, want) in [
            (&[(3, "vnc")][..], "named \"vnc\""),
            (&[(3, "control"), (4, "control")][..], "two sockets named"),
            (&[(3, "x"), (4, "y"), (5, "z")][..], "named \"x\""),
            (&[(3, ""), (4, ""), (5, "")][..], "more than two"),
        ] {
            let err = named(list).unwrap_err();
            assert!(err.contains(want), "{list:?}: {err}");
        }

        let cli = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("vhost-user-pvmouse").chain(args.iter().copied()))
                .unwrap()
        };
        let c = Config::new(cli(&["--restartable"]), both).unwrap();
        assert_eq!(c.vhost_socket, VhostSocket::Fd(3));
        assert_eq!(c.control_socket, Some(ControlSocket::Fd(4)));
        assert_eq!(c.role, Role::Keeper);
        let c = Config::new(cli(&[]), three).unwrap();
        assert_eq!(c.relative_socket, Some(VhostSocket::Fd(5)));
        assert!(c.identity.relative());
        for (args, want) in [
            (&["--socket-path", "a"][..], "--socket-path names another"),
            (&["--fd", "5"][..], "--fd names another"),
            (
                &["--control-socket", "c"][..],
                "--control-socket names another",
            ),
        ] {
            let err = Config::new(cli(args), both).unwrap_err().to_string();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn a_worker_role_cannot_be_mixed_with_the_others() {
        for (args, want) in [
            (
                &["--fd", "3", "--ledger-fd", "4", "--restartable"][..],
                "cannot be used with",
            ),
            (
                &["--fd", "3", "--control-fd", "4"][..],
                "required arguments were not provided",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn refuses_bad_combinations_with_a_reason() {
        for (args, want) in [
            (&["--displays", "2"][..], "--socket-path"),
            (
                &["--socket-path", "a", "--fd", "3"][..],
                "cannot be used with",
            ),
            (
                &["--socket-path", "a", "--displays", "17"][..],
                "displays must be 1 to 16",
            ),
            (
                &["--socket-path", "a", "--displays", "0"][..],
                "displays must be 1 to 16",
            ),
            (&["--fd=-1"][..], "not a valid descriptor"),
            (
                &["--socket-path", "/tmp/s", "--control-socket", "/tmp/s"][..],
                "both /tmp/s",
            ),
            (
                &[
                    "--socket-path",
                    "/tmp/s",
                    "--control-socket",
                    "/tmp/../tmp/s",
                ][..],
                "give each socket its own path",
            ),
            (
                &["--socket-path", "/tmp/s", "--relative-socket", "/tmp/s"][..],
                "both /tmp/s",
            ),
            (
                &["--socket-path", "a", "--relative-fd=-2"][..],
                "not a valid descriptor",
            ),
            (&["--socket-path", "a", "--name", ""][..], "name must be"),
            (
                &[
                    "--socket-path",
                    "a",
                    "--socket-group",
                    "no-such-group-pvmouse",
                ][..],
                "no such group",
            ),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(want), "{args:?}: {err}");
        }
    }

    #[test]
    fn the_discovery_descriptor_matches_the_capabilities() {
        let d: serde_json::Value =
            serde_json::from_str(include_str!("../50-vhost-user-pvmouse.json")).unwrap();
        let caps: serde_json::Value = serde_json::from_str(capabilities_json()).unwrap();
        assert_eq!(d["type"], caps["type"]);
        assert!(
            d["binary"].as_str().unwrap().starts_with('/'),
            "binary must be absolute"
        );
        assert!(d["description"].is_string());
        let keys: Vec<_> = d.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["binary", "description", "tags", "type"]);
    }

    #[test]
    fn capabilities_are_json_with_type_input() {
        let v: serde_json::Value = serde_json::from_str(capabilities_json()).unwrap();
        assert_eq!(v["type"], "input");
        assert!(v["features"].as_array().unwrap().is_empty());
    }
}
