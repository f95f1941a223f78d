//! The vocc runtime: the plan format and, later, the executor and hypervisor drivers.
//! It never parses appliance files and never renders templates.

pub mod plan;
pub mod schema;

pub use plan::{Plan, SCHEMA_VERSION};
