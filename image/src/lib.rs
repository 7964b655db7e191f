//! berth's image service: a content store of blobs by digest, import of OCI layouts, OCI
//! archives and `docker save` archives, registry pull (distribution API v2), layer application
//! with whiteouts under strict confinement, a snapshotter in containerd's model (one snapshot
//! per layer, keyed by ChainID, overlayfs mounts with a copy fallback), garbage collection, and
//! bundle (config.json) generation from an image config.
//!
//! This library depends on no binary crate and not on libcontainer: `berthctl` glues it to the
//! `berth` runtime through runc's command line.

pub mod auth;
pub mod bundle;
pub mod commit;
pub mod diff;
pub mod digest;
pub mod error;
pub mod export;
pub mod fsutil;
pub mod images;
pub mod import;
pub mod layer;
pub mod layer_tar;
pub mod overlay;
pub mod push;
pub mod reference;
pub mod registry;
pub mod seccomp;
pub mod snapshot;
pub mod store;
pub mod user;

pub use digest::Digest;
pub use error::{Error, Result};
pub use images::{Desc, Event, ImageRecord, Platform, Progress, Quiet, Store};
/// The OCI types this library speaks (image and runtime spec), for its users.
pub use oci_spec;
pub use reference::Reference;
