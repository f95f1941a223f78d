//! What the rendered files say, fixture by fixture. The real programs that read them
//! judge them in the root package's `tests/validate.rs`; these tests pin the facts
//! vocc decides (addresses, names, ranges, options).

mod common;

use common::{render_fixture, text};

fn lines(s: &str) -> Vec<&str> {
    s.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect()
}

#[test]
fn hosts_lists_every_address_of_the_cluster() {
    let (_, _, r) = render_fixture("osg");
    let hosts = text(&r, "osg-worker4", "files/etc/hosts");
    assert_eq!(
        lines(&hosts),
        [
            "127.0.0.1\tlocalhost",
            "::1\tlocalhost ip6-localhost ip6-loopback",
            "ff02::1\tip6-allnodes",
            "ff02::2\tip6-allrouters",
            "10.20.0.1\thead.osg\thead",
            "192.0.2.10\thead.osg\thead",
            "10.20.0.2\tworker1.osg\tworker1",
            "10.20.0.3\tworker2.osg\tworker2",
            "10.20.0.4\tworker3.osg\tworker3",
            "10.20.0.5\tworker4.osg\tworker4",
            "10.20.0.6\tworker5.osg\tworker5",
            "10.20.0.7\tworker6.osg\tworker6",
            "10.20.0.8\tworker7.osg\tworker7",
            "10.20.0.9\tworker8.osg\tworker8",
        ]
    );
}

#[test]
fn slurm_conf_names_the_controller_nodes_and_partitions() {
    let (_, _, r) = render_fixture("osg");
    let conf = text(&r, "osg-worker1", "files/etc/slurm/slurm.conf");
    let l = lines(&conf);
    assert!(l.contains(&"ClusterName=osg"));
    assert!(l.contains(&"SlurmctldHost=head(10.20.0.1)"));
    assert!(l.contains(&"AuthType=auth/munge"));
    assert!(l.contains(&"NodeName=worker[1-8] CPUs=1 RealMemory=360 State=UNKNOWN"));
    assert!(
        l.contains(&"PartitionName=osg Nodes=worker[1-8] Default=YES MaxTime=INFINITE State=UP")
    );
    assert_eq!(text(&r, "osg-head", "files/etc/slurm/slurm.conf"), conf);
}

#[test]
fn slurm_conf_stays_small_for_big_clusters() {
    let (_, _, r) = render_fixture("synthetic-2000");
    let conf = text(&r, "osg-worker1234", "files/etc/slurm/slurm.conf");
    assert!(conf.contains("NodeName=worker[1-1999] CPUs=1"));
    assert!(conf.contains("PartitionName=osg Nodes=worker[1-1999] Default=YES"));
    assert!(conf.len() < 2048, "{} bytes", conf.len());
}

#[test]
fn munge_key_is_the_secret_and_private() {
    let (model, _, r) = render_fixture("osg");
    let secrets = common::test_secrets(&model);
    let node = r.node("osg-worker2").unwrap();
    let key = node
        .files()
        .find(|f| f.path == "files/etc/munge/munge.key")
        .unwrap();
    assert_eq!(r.content(key).unwrap(), secrets.munge_key("osg").unwrap());
    assert_eq!(r.objects[&key.digest].mode, 0o600);
}

#[test]
fn interfaces_static_and_dhcp() {
    let (_, _, r) = render_fixture("osg");
    let head = text(&r, "osg-head", "files/etc/network/interfaces");
    assert!(head.contains(
        "auto eth0\niface eth0 inet static\n    address 10.20.0.1\n    netmask 255.255.255.0\n\n"
    ));
    // The default route goes on the one NIC whose network has a gateway.
    assert!(head.contains(
        "iface eth1 inet static\n    address 192.0.2.10\n    netmask 255.255.255.240\n    gateway 192.0.2.1\n"
    ));
    let (_, _, r) = render_fixture("sge");
    let bio = text(&r, "gridway-bio3", "files/etc/network/interfaces");
    assert!(bio.contains("auto eth0\niface eth0 inet dhcp\n"));
}

#[test]
fn networkd_matches_by_mac() {
    let (_, _, r) = render_fixture("osg");
    let eth1 = text(&r, "osg-head", "files/etc/systemd/network/10-eth1.network");
    assert_eq!(
        lines(&eth1),
        [
            "[Match]",
            "MACAddress=02:00:00:00:01:01",
            "[Network]",
            "Address=192.0.2.10/28",
            "Gateway=192.0.2.1",
            "Domains=osg"
        ]
    );
    let (_, _, r) = render_fixture("condor");
    let c = text(
        &r,
        "voc-compute7",
        "files/etc/systemd/network/10-eth0.network",
    );
    assert!(c.contains("[Network]\nDHCP=ipv4\nDNS=10.50.0.1\n"), "{c}");
}

#[test]
fn fstab_and_exports() {
    let (_, _, r) = render_fixture("osg");
    let head = text(&r, "osg-head", "files/etc/fstab");
    assert_eq!(
        lines(&head),
        [
            "/dev/xvdb\t/opt/vdt\text4\tro,nofail\t0\t0",
            "/dev/xvdc\t/opt/apps\text4\trw,nofail\t0\t0",
            "/dev/xvdd\tnone\tswap\tsw,nofail\t0\t0",
        ]
    );
    let worker = text(&r, "osg-worker5", "files/etc/fstab");
    assert_eq!(
        lines(&worker),
        [
            "/dev/xvdb\tnone\tswap\tsw,nofail\t0\t0",
            "10.20.0.1:/opt/vdt\t/opt/vdt\tnfs\tro,vers=4,_netdev,bg,hard,nofail\t0\t0",
            "10.20.0.1:/opt/apps\t/opt/apps\tnfs\trw,vers=4,_netdev,bg,hard,nofail\t0\t0",
        ]
    );
    let exports = text(&r, "osg-head", "files/etc/exports");
    assert_eq!(
        lines(&exports),
        [
            "/opt/vdt\t10.20.0.0/24(ro,sync,no_subtree_check,root_squash)",
            "/opt/apps\t10.20.0.0/24(rw,sync,no_subtree_check,root_squash)",
        ]
    );
}

#[test]
fn kernel_command_line() {
    let (_, _, r) = render_fixture("osg");
    assert_eq!(
        text(&r, "osg-worker2", "cmdline"),
        "console=hvc0 root=/dev/xvda rw net.ifnames=0 quiet vocc.node=osg-worker2\n"
    );
    let xen = text(&r, "osg-worker2", "xen.cfg");
    assert!(xen.contains(
        "cmdline = \"console=hvc0 root=/dev/xvda rw net.ifnames=0 quiet vocc.node=osg-worker2\"\n"
    ));
    let (_, _, r) = render_fixture("condor");
    assert_eq!(
        text(&r, "voc-head", "cmdline"),
        "console=ttyS0 root=/dev/vda rw net.ifnames=0 vocc.node=voc-head\n"
    );
}

#[test]
fn xen_domain() {
    let (_, _, r) = render_fixture("osg");
    let cfg = text(&r, "osg-head", "xen.cfg");
    for line in [
        "name = \"osg-head\"",
        "memory = 384",
        "vcpus = 1",
        "kernel = \"/var/lib/vocc/layers/osg/os.vmlinuz\"",
        "    \"format=qcow2,vdev=xvda,access=rw,target=/var/lib/vocc/nodes/osg-head/root.qcow2\",",
        "    \"format=raw,vdev=xvdb,access=ro,target=/var/lib/vocc/layers/osg/vdt.img\",",
        "    \"format=qcow2,vdev=xvdc,access=rw,target=/var/lib/vocc/nodes/osg-head/apps.qcow2\",",
        "    \"format=raw,vdev=xvdd,access=rw,target=/var/lib/vocc/nodes/osg-head/swap.img\",",
        "    \"format=raw,vdev=xvde,access=ro,target=/var/lib/vocc/nodes/osg-head/cidata.img\",",
        "    \"mac=02:00:00:00:01:00,bridge=xenbr1\",",
        "    \"mac=02:00:00:00:01:01,bridge=xenbr0\",",
        "on_crash = \"destroy\"",
    ] {
        assert!(cfg.lines().any(|l| l == line), "no `{line}` in\n{cfg}");
    }
}

#[test]
fn libvirt_domain() {
    let (_, _, r) = render_fixture("condor");
    let xml = text(&r, "voc-compute3", "libvirt.xml");
    for part in [
        "<domain type='kvm'>",
        "<name>voc-compute3</name>",
        "<memory unit='KiB'>1048576</memory>",
        "<vcpu>1</vcpu>",
        "<source file='/var/lib/vocc/nodes/voc-compute3/root.qcow2'/>",
        "<mac address='02:00:01:00:03:00'/>",
        // The site names no bridge for `lan`: a libvirt network of that name.
        "<source network='vocc-voc-lan'/>",
        "<model type='virtio'/>",
        "<target type='serial' port='0'/>",
    ] {
        assert!(xml.contains(part), "no `{part}` in\n{xml}");
    }
}

#[test]
fn cloud_init() {
    let (_, _, r) = render_fixture("condor");
    assert_eq!(
        text(&r, "voc-compute3", "cidata/meta-data"),
        "instance-id: voc-compute3\nlocal-hostname: compute3.voc\n"
    );
    assert!(text(&r, "voc-compute3", "cidata/user-data").starts_with("#cloud-config\n"));
    assert_eq!(
        text(&r, "voc-head", "cidata/network-config"),
        "version: 2\nethernets:\n  eth0:\n    match:\n      macaddress: \"02:00:00:00:01:00\"\n    \
         set-name: eth0\n    dhcp4: false\n    addresses:\n      - 10.50.0.2/22\n    routes:\n      \
         - to: default\n        via: 10.50.0.1\n    nameservers:\n      search: [voc]\n      \
         addresses: [10.50.0.1]\n"
    );
    assert!(text(&r, "voc-compute3", "cidata/network-config").ends_with("    dhcp4: true\n"));
}

#[test]
fn dnsmasq_serves_fixed_leases_from_the_controller() {
    let (model, _, r) = render_fixture("condor");
    let conf = text(&r, "voc-head", "files/etc/dnsmasq.conf");
    let l = lines(&conf);
    for want in [
        "domain=voc",
        "no-resolv",
        "no-hosts",
        "interface=eth0",
        "dhcp-range=set:lan,10.50.0.0,static,255.255.252.0,12h",
        "dhcp-option=tag:lan,option:router,10.50.0.1",
        "dhcp-option=tag:lan,option:dns-server,10.50.0.1",
        "dhcp-host=02:00:01:00:01:00,10.50.0.3,compute1",
    ] {
        assert!(l.contains(&want), "no `{want}` in\n{conf}");
    }
    assert_eq!(l.iter().filter(|l| l.starts_with("dhcp-host=")).count(), 28);
    let compute = r.node("voc-compute1").unwrap();
    assert!(compute.files().all(|f| f.kind != "dnsmasq.conf"));
    assert_eq!(model.clusters[0].nodes.len(), 29);
}

#[test]
fn pbs_files() {
    let (_, _, r) = render_fixture("pbs");
    assert_eq!(
        text(&r, "vo-a-worker2", "files/var/spool/torque/server_name"),
        "head\n"
    );
    let nodes = text(&r, "vo-a-head", "files/var/spool/torque/server_priv/nodes");
    assert_eq!(nodes.lines().count(), 7);
    assert!(nodes.starts_with("worker1 np=2 batch\n"));
    let mom = text(&r, "vo-a-worker2", "files/var/spool/torque/mom_priv/config");
    assert_eq!(
        mom,
        "$pbsserver head\n$logevent 255\n$usecp *:/home /home\n"
    );
    let qmgr = text(&r, "vo-a-head", "files/etc/vocc/pbs/qmgr");
    assert!(qmgr.contains("create queue batch\n"));
    assert!(qmgr.contains("set server default_queue = batch\n"));
    let worker = r.node("vo-a-worker2").unwrap();
    assert!(worker
        .files()
        .all(|f| f.kind != "pbs-nodes" && f.kind != "pbs-qmgr"));
}

#[test]
fn sge_queue_per_vo() {
    let (_, _, r) = render_fixture("sge");
    assert_eq!(
        text(
            &r,
            "gridway-bio2",
            "files/var/lib/gridengine/default/common/act_qmaster"
        ),
        "front.gridway\n"
    );
    assert_eq!(
        text(
            &r,
            "gridway-front",
            "files/etc/vocc/sge/hostgroups/@fusionhosts"
        ),
        "group_name @fusionhosts\nhostlist fusion1.gridway fusion2.gridway\n"
    );
    let bio = text(&r, "gridway-front", "files/etc/vocc/sge/queues/bio");
    assert!(bio.starts_with("qname                 bio\nhostlist              @biohosts\n"));
    assert!(bio.contains("\nslots                 2\n"));
    // The master's boot steps: the cell before sge_qmaster starts, qconf after.
    for (path, says) in [
        ("files/etc/vocc/batch/setup", "init_cluster"),
        ("files/etc/vocc/batch/configure", "qconf -Aq"),
    ] {
        let script = r
            .node("gridway-front")
            .unwrap()
            .files()
            .find(|f| f.path == path)
            .unwrap()
            .clone();
        assert_eq!(r.objects[&script.digest].mode, 0o755, "{path}");
        assert!(text(&r, "gridway-front", path).contains(says), "{path}");
    }
    // An execution host waits to be seen by the master before it is ready.
    assert!(text(&r, "gridway-fusion1", "files/etc/vocc/batch/configure").contains("qhost -h"));
}

#[test]
fn condor_daemons_by_role() {
    let (_, _, r) = render_fixture("condor");
    let head = text(&r, "voc-head", "files/etc/condor/condor_config.local");
    assert!(head.contains("CONDOR_HOST = head.voc\n"));
    assert!(head.contains("DAEMON_LIST = MASTER, COLLECTOR, NEGOTIATOR, SCHEDD\n"));
    assert!(head.contains("ALLOW_WRITE = 10.50.0.0/22, 127.0.0.1\n"));
    let compute = text(&r, "voc-compute9", "files/etc/condor/condor_config.local");
    assert!(compute.contains("DAEMON_LIST = MASTER, STARTD\n"));
}

#[test]
fn shared_files_are_rendered_once() {
    let (_, _, r) = render_fixture("synthetic-300");
    let first = r.node("osg-worker1").unwrap();
    let last = r.node("osg-worker299").unwrap();
    assert!(std::sync::Arc::ptr_eq(&first.shared, &last.shared));
    // Objects: per node, its own files; per role and cluster, a handful.
    let own: usize = r.nodes.iter().map(|n| n.own.len()).sum();
    assert!(
        r.objects.len() <= own + 20,
        "{} objects for {own} own files",
        r.objects.len()
    );
}

#[test]
fn domains_use_the_images_the_plan_records() {
    use vocc_runtime::plan::PlanLayer;
    let (model, mut plan) = common::build_fixture("osg");
    let built = |name: &str, format: &str, kernel: bool| PlanLayer {
        id: format!("osg/{name}"),
        cluster: "osg".into(),
        name: name.into(),
        source: "test".into(),
        size: None,
        sha256: Some("ab".repeat(32)),
        image: Some(format!("layers/osg/{name}.{format}")),
        format: format.parse().ok(),
        kernel: kernel.then(|| format!("layers/osg/{name}.vmlinuz")),
        initrd: kernel.then(|| format!("layers/osg/{name}.initrd")),
        sums: Default::default(),
    };
    plan.layers = vec![built("os+head", "raw", true), built("vdt", "qcow2", false)];
    for n in plan.nodes.iter_mut().filter(|n| n.role == "head") {
        n.root_image = Some("osg/os+head".into());
    }
    let templates = vocc_compiler::render::Templates::embedded().unwrap();
    let secrets = common::test_secrets(&model);
    let r = vocc_compiler::render::render(&model, &plan, &templates, &secrets).unwrap();
    let cfg = text(&r, "osg-head", "xen.cfg");
    assert!(
        cfg.contains("kernel = \"/var/lib/vocc/layers/osg/os+head.vmlinuz\"\n"),
        "{cfg}"
    );
    assert!(
        cfg.contains("ramdisk = \"/var/lib/vocc/layers/osg/os+head.initrd\"\n"),
        "{cfg}"
    );
    assert!(cfg.contains(
        "\"format=qcow2,vdev=xvdb,access=ro,target=/var/lib/vocc/layers/osg/vdt.qcow2\""
    ));
    // Nodes whose root layer the plan does not describe keep the layout's paths.
    let worker = text(&r, "osg-worker1", "xen.cfg");
    assert!(
        worker.contains("kernel = \"/var/lib/vocc/layers/osg/os.vmlinuz\"\n"),
        "{worker}"
    );
}
