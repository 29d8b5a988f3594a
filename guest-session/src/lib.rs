//! `pvmouse-session`'s library part: its command line, for the man page. The agent itself is
//! the binary (`main.rs`).

pub mod cli;
