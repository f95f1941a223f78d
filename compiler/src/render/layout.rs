//! Where things are: the guest paths of generated files, the paths of a node's images
//! on its host, and the device names its disks get.
//!
//! A node's disks are attached in one fixed order, so that the domain configuration
//! (xen.cfg, libvirt.xml) and the guest's fstab agree on device names without labels:
//! the root overlay first, then the role's data disks in the order the role lists
//! them, then the swap disk, and the config drive last.
//!
//! On a host, under the plan's store (the image step may record other image paths in
//! the plan's layers; those win):
//! - `layers/<cluster>/<layer>.img` — a layer's read-only image (shared by every node
//!   of the host that uses it); the bottom root layer also provides the kernel and
//!   initramfs as `layers/<cluster>/<layer>.vmlinuz` and `.initrd`;
//! - `<node dir>/root.qcow2` — the node's copy-on-write root overlay;
//! - `<node dir>/<layer>.qcow2` — its overlay of a writable data disk;
//! - `<node dir>/swap.img` — its raw swap disk (formatted by the boot script);
//! - `<node dir>/cidata.img` — its config drive (label `cidata`).

use crate::model::Hypervisor;

/// The path of a layer's image under `store`.
pub fn layer_image(store: &str, cluster: &str, layer: &str) -> String {
    format!("{}/layers/{cluster}/{layer}.img", trim(store))
}

/// The kernel and initramfs that come with the bottom root layer.
pub fn kernel(store: &str, cluster: &str, layer: &str) -> (String, String) {
    let base = format!("{}/layers/{cluster}/{layer}", trim(store));
    (format!("{base}.vmlinuz"), format!("{base}.initrd"))
}

/// A path relative to the store (as the plan records built images), under `store`.
pub fn in_store(store: &str, path: &str) -> String {
    format!("{}/{}", trim(store), path.trim_start_matches('/'))
}

/// A file of the node's own directory on its host.
pub fn node_file(store: &str, dir: &str, file: &str) -> String {
    format!("{}/{}/{file}", trim(store), dir.trim_matches('/'))
}

/// The store without a trailing `/` (`/` itself becomes the empty prefix of absolute
/// paths; an empty store means the current directory).
fn trim(store: &str) -> &str {
    match store.trim_end_matches('/') {
        "" if !store.starts_with('/') => ".",
        s => s,
    }
}

/// The guest device of disk number `index` (0 is the root): `xvda`, `vdb`, …, and
/// after `z` the kernel's `aa`, `ab`, ….
pub fn disk_device(hypervisor: Hypervisor, index: usize) -> String {
    let prefix = match hypervisor {
        Hypervisor::Xen => "xvd",
        Hypervisor::Kvm => "vd",
    };
    let mut letters = Vec::new();
    let mut n = index + 1;
    while n > 0 {
        n -= 1;
        letters.push(b'a' + (n % 26) as u8);
        n /= 26;
    }
    letters.reverse();
    format!("{prefix}{}", String::from_utf8_lossy(&letters))
}

/// The kernel's console: Xen paravirtual guests have `hvc0`, KVM guests a serial port.
pub fn console(hypervisor: Hypervisor) -> &'static str {
    match hypervisor {
        Hypervisor::Xen => "hvc0",
        Hypervisor::Kvm => "ttyS0",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices() {
        assert_eq!(disk_device(Hypervisor::Xen, 0), "xvda");
        assert_eq!(disk_device(Hypervisor::Kvm, 3), "vdd");
        assert_eq!(disk_device(Hypervisor::Kvm, 25), "vdz");
        assert_eq!(disk_device(Hypervisor::Kvm, 26), "vdaa");
        assert_eq!(disk_device(Hypervisor::Kvm, 27), "vdab");
    }

    #[test]
    fn paths() {
        assert_eq!(
            layer_image("/var/lib/vocc/", "osg", "vdt"),
            "/var/lib/vocc/layers/osg/vdt.img"
        );
        assert_eq!(
            node_file("/s", "nodes/osg-head", "root.qcow2"),
            "/s/nodes/osg-head/root.qcow2"
        );
        assert_eq!(
            node_file(".vocc/store", "nodes/a", "x"),
            ".vocc/store/nodes/a/x"
        );
    }
}
