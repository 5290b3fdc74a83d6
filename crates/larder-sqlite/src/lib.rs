#![doc = include_str!("../README.md")]

mod backend;
mod batch;
mod config;
mod connection;
mod error;
mod fill;
mod locks;
mod scan;
mod schema;
mod store;
mod tags;
mod writer;

pub use backend::SqliteBackend;
pub use config::{Location, SCHEMES, SqliteConfig, Synchronous};
pub use schema::SCHEMA_VERSION;
