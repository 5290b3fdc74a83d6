#![doc = include_str!("../README.md")]

mod backend;
mod batch;
mod config;
mod connection;
mod error;
mod fill;
mod format;
mod locks;
mod read;
mod scan;
mod sweep;
mod sync;
mod tags;

pub use backend::SledBackend;
pub use config::{FlushPolicy, SCHEMES, SledConfig};
pub use sync::SyncSled;
