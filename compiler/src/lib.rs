//! The vocc compiler: resolve appliance files into a checked model, allocate
//! addresses, place nodes on a site, render every node's configuration, and write the
//! plan.

pub mod model;
