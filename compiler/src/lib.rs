//! The vocc compiler: resolve appliance files into a checked model, allocate
//! addresses, place nodes on a site, render every node's configuration, and write the
//! plan.

pub mod alloc;
pub mod args;
pub mod build;
pub mod check;
pub mod compile;
pub mod explain;
pub mod graph;
pub mod image;
pub mod load;
pub mod model;
pub mod output;
pub mod packages;
pub mod plan;
pub mod policy;
pub mod render;
pub mod resolve;
pub mod scheduler;
pub mod secrets;
pub mod sources;
pub mod world;

pub use compile::{compile, Compilation, LoadError, Options};
pub use world::{FsWorld, MemWorld, World};
