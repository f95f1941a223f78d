//! The vocc runtime: the plan format, and the executor that runs plans on a site's
//! hosts through hypervisor drivers, with a journal per cluster.
//! It never parses appliance files and never renders templates.

pub mod agent;
pub mod artifacts;
pub mod atomic;
pub mod claim;
pub mod cluster;
pub mod console;
pub mod dag;
pub mod distribute;
pub mod driver;
pub mod error;
pub mod hostlink;
pub mod hostnode;
pub mod hostops;
pub mod journal;
pub mod names;
pub mod plan;
pub mod ports;
pub mod proc;
pub mod reconcile;
pub mod relay;
pub mod report;
pub mod schema;
pub mod stage;
pub mod state;

pub use cluster::{Op, Options, Runtime, Selection};
pub use error::Error;
pub use plan::{Plan, SCHEMA_VERSION};
