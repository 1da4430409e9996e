//! The profile's `[network]` section: VXLAN segments (the Hunt's isolated networks).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The UDP port VXLAN uses unless a segment sets one: IANA's 4789, not Linux's
/// historical 8472, so segments interoperate with other VTEPs.
pub const DEFAULT_PORT: u16 = 4789;
/// The largest VNI: VXLAN's identifier is 24 bits.
pub const MAX_VNI: u32 = 16_777_215;
/// What VXLAN adds to each frame over IPv4: outer IP 20 + UDP 8 + VXLAN 8 + inner
/// Ethernet 14.
pub const VXLAN_OVERHEAD: u32 = 50;
/// The MTU of Tailscale's interface, which a segment over the tailnet derives from.
pub const TAILSCALE_MTU: u32 = 1280;
/// The underlay name that means "this node's Tailscale address and interface".
pub const TAILSCALE_UNDERLAY: &str = "tailscale";
/// Linux's limit on interface names (IFNAMSIZ minus the terminating zero).
pub const MAX_IFNAME: usize = 15;

fn port_schema(schema: &mut schemars::Schema) {
    schema.insert("default".into(), DEFAULT_PORT.into());
}

/// The machine's networks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// VXLAN segments, keyed by name. The name is the VXLAN device's name (at most 15
    /// bytes: letters, digits, '-', '_', '.'); sovereign creates it over netlink, marks
    /// it with the alias `sovereign:network.vxlan.NAME`, and deletes it when the profile
    /// drops the segment (links hold no data).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vxlan: BTreeMap<String, Segment>,

    /// This machine's Tailscale node: installed from Tailscale's apt repository, its
    /// daemon run, and its settings converged on every apply (the running node too, not
    /// only at its first login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tailscale: Option<TailscaleSpec>,
}

/// The Tailscale apt repository sovereign installs from unless told otherwise.
pub const TAILSCALE_DISTRIBUTION: &str = "debian bookworm";

/// The Tailscale node. Settings left out are left as the node has them, except
/// `advertise_tags` and `advertise_routes`, which are exactly what is listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TailscaleSpec {
    /// Install the `tailscale` package from Tailscale's apt repository (its source entry
    /// is a managed file, its signing key fetched over HTTPS and checked against the
    /// fingerprint sovereign pins) and run `tailscaled`. Default true; false when the
    /// package comes from elsewhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install: Option<bool>,

    /// The repository's distribution and release, as Tailscale names them
    /// ("debian bookworm", "ubuntu noble"). Default "debian bookworm".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distribution: Option<String>,

    /// An absolute path to a file holding an auth key, used when the node must log in
    /// (and for `up --reset`). It is handed to `tailscale` as `--auth-key=file:PATH`: the
    /// key itself never appears on a command line, in a plan or in a log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_key_file: Option<String>,

    /// The node's name in the tailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,

    /// ACL tags the node advertises ("tag:forge"). Changing them needs `up --reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_tags: Option<Vec<String>>,

    /// Subnet routes (CIDR) the node offers to the tailnet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_routes: Option<Vec<String>>,

    /// Use the subnet routes other nodes advertise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_routes: Option<bool>,

    /// Use the tailnet's DNS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_dns: Option<bool>,

    /// Run Tailscale SSH on this node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh: Option<bool>,

    /// Offer this node as an exit node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertise_exit_node: Option<bool>,

    /// Send internet traffic through this exit node (its Tailscale IP or name); "" for
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_node: Option<String>,

    /// A coordination server other than Tailscale's (Headscale). Changing it needs
    /// `up --reset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_server: Option<String>,
}

/// One VXLAN segment: an isolated layer-2 network carried in UDP over the underlay.
/// Give `local` or `underlay` (or both).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    /// The VXLAN network identifier, 1 to 16777215, unique on this host. Both ends of a
    /// segment use the same VNI.
    #[schemars(range(min = 1, max = MAX_VNI))]
    pub vni: u32,

    /// This host's IPv4 address on the underlay, the source of the segment's packets.
    /// Where it is left out, the kernel picks one by route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<String>,

    /// The underlay device the segment is bound to (`eth0`), or "tailscale": this
    /// node's Tailscale IPv4 becomes `local`, peers may be Tailscale host names, and the
    /// MTU derives from Tailscale's 1280-byte interface.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub underlay: Option<String>,

    /// The other ends, for unicast head-end replication: IPv4 addresses (or Tailscale
    /// host names over a Tailscale underlay). Each one is an all-zero forwarding entry on
    /// the VXLAN device; learning is off. Leave out for a multicast `group`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<String>,

    /// A multicast group (IPv4, 224.0.0.0/4) instead of `peers`; needs `underlay`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,

    /// The UDP port, 4789 by default (IANA's; Linux's historical 8472 is not used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), transform = port_schema)]
    pub port: Option<u16>,

    /// The segment's MTU. Default: the underlay's MTU minus the 50 bytes VXLAN adds; a
    /// larger value is an error at plan time, since such frames would not fit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 68, max = 65535))]
    pub mtu: Option<u32>,

    /// A bridge the VXLAN device is a port of, which VMs attach to (at most 15 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bridge: Option<String>,

    /// Addresses in CIDR form (`10.42.0.1/24`): on the bridge when the segment has one,
    /// else on the VXLAN device.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
}

impl Segment {
    /// The UDP port, with the default.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(DEFAULT_PORT)
    }

    /// Whether the segment runs over this node's Tailscale.
    pub fn over_tailscale(&self) -> bool {
        self.underlay.as_deref() == Some(TAILSCALE_UNDERLAY)
    }
}
