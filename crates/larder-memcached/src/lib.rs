#![doc = include_str!("../README.md")]

mod backend;
mod batch;
mod config;
mod connection;
mod counter;
mod error;
mod fill;
mod item;
mod lock;
mod ring;
mod scan;
mod tags;

pub use backend::MemcachedBackend;
pub use config::{DEFAULT_PORT, MAX_WEIGHT, MemcachedConfig, SCHEMES, ServerConfig};
