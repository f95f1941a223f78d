//! Which keywords start a statement in which kind of block.
//!
//! The parser uses this table only to report unknown keys, never to decide where a
//! statement ends (that is syntax alone: a line break, `;` or `}`); the compiler uses
//! the same [`Context`] values when it interprets statements.

/// The kind of block a statement stands in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Context {
    /// The top level of a file.
    File,
    Cluster,
    Site,
    Network,
    Layer,
    Role,
    Host,
    /// A site's `access`: how the control machine reaches the hosts.
    Access,
    /// A site's `images`: the image server its hosts take layers from.
    Images,
    /// A site's policy for elastic clusters (`vocc autoscale --policy`).
    Policy,
    /// The block of an unknown statement: anything goes, statements end at line ends.
    Unknown,
}

impl Context {
    /// Every context, for messages such as "`memory` is a key of a role".
    pub const ALL: [Context; 11] = [
        Context::File,
        Context::Cluster,
        Context::Site,
        Context::Network,
        Context::Layer,
        Context::Role,
        Context::Host,
        Context::Access,
        Context::Images,
        Context::Policy,
        Context::Unknown,
    ];

    /// The statement keywords allowed in this context.
    pub fn keywords(self) -> &'static [&'static str] {
        match self {
            Context::File => &[
                "import", "let", "cluster", "site", "network", "layer", "role", "policy",
            ],
            Context::Cluster => &[
                "vo",
                "hypervisor",
                "domain",
                "let",
                "network",
                "layer",
                "role",
                "queue",
                "partition",
            ],
            Context::Site => &["host", "bridge", "store", "access", "images", "let"],
            Context::Network => &["subnet", "assign", "gateway", "dns", "uplink"],
            Context::Layer => &["from", "packages", "size", "sha256"],
            Context::Role => &[
                "count",
                "idle",
                "root",
                "disk",
                "cpu",
                "memory",
                "swap",
                "nic",
                "export",
                "mount",
                "scheduler",
                "overlay",
                "cmdline",
            ],
            Context::Host => &[
                "cpu",
                "memory",
                "disk",
                "hypervisor",
                "reserve",
                "overcommit",
                "address",
            ],
            Context::Access => &["user", "identity", "known_hosts", "program", "conf"],
            Context::Images => &["address"],
            Context::Policy => &["capacity", "share"],
            Context::Unknown => &[],
        }
    }

    pub fn is_keyword(self, word: &str) -> bool {
        self.keywords().contains(&word)
    }

    /// The context of the block opened by statement `keyword` standing in `self`.
    pub fn child(self, keyword: &str) -> Context {
        match (self, keyword) {
            (Context::File, "cluster") => Context::Cluster,
            (Context::File, "site") => Context::Site,
            (Context::File, "policy") => Context::Policy,
            (Context::File | Context::Cluster, "network") => Context::Network,
            (Context::File | Context::Cluster, "layer") => Context::Layer,
            (Context::File | Context::Cluster, "role") => Context::Role,
            (Context::Site, "host") => Context::Host,
            (Context::Site, "access") => Context::Access,
            (Context::Site, "images") => Context::Images,
            _ => Context::Unknown,
        }
    }

    /// How this block is called in messages.
    pub fn name(self) -> &'static str {
        match self {
            Context::File => "the top level",
            Context::Cluster => "a cluster",
            Context::Site => "a site",
            Context::Network => "a network",
            Context::Layer => "a layer",
            Context::Role => "a role",
            Context::Host => "a host",
            Context::Access => "a site's access",
            Context::Images => "a site's image server",
            Context::Policy => "a policy",
            Context::Unknown => "this block",
        }
    }
}
