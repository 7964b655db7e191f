//! libcontainer: turn an OCI bundle into a running, isolated process, and manage it after.
//!
//! The parent side (`create`, `container`) drives the init side (`init`) over a typed channel;
//! `cgroups` is one manager interface over the host's cgroup layout; `sys` holds the only
//! `unsafe` system-call wrappers.

pub mod cgroups;
pub mod channel;
pub mod config;
pub mod container;
pub mod cpuaffinity;
pub mod cpulist;
pub mod create;
pub mod criu;
pub mod error;
pub mod exec;
pub mod features;
pub mod hooks;
pub mod idmap;
pub mod init;
pub mod intelrdt;
pub mod mempolicy;
pub mod namespaces;
pub mod netdev;
pub mod netlink;
pub mod procfs;
pub mod sealed;
pub mod seccomp;
pub mod spec_default;
pub mod state;
pub mod sys;
pub mod timefmt;
pub mod tty;

pub use error::{Error, Result};
