#![doc = include_str!("../README.md")]

mod duration;
mod size;

pub use duration::parse_duration;
pub use size::parse_size;
