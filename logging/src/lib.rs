//! The log set-up every pvmouse binary shares, host and guest alike: the filter from `RUST_LOG`
//! or `info`, written to standard error, coloured only on a terminal so that log files and the
//! journal stay plain text.

/// Installs the global subscriber; call once, first thing in `main`.
pub fn init() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
