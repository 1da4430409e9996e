//! Kernel networking over rtnetlink: the one place that opens a netlink socket (clippy's
//! `disallowed-methods` fences `rtnetlink::new_connection` like process spawning).
//!
//! The rest of the program is synchronous, so [`Netlink`] owns a current-thread tokio
//! runtime and blocks on each request; the connection task runs while a request waits.
//! Every type here is plain data about links, addresses and forwarding
//! entries; what they mean to a profile is the network domain's business.

use std::io;
use std::net::{IpAddr, Ipv4Addr};

use futures_util::TryStreamExt;
use netlink_packet_core::{DecodeError, NetlinkMessage, NlasIterator};
use netlink_packet_route::AddressFamily;
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVxlan, LinkAttribute, LinkExtentMask, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVxlan};

/// One network interface as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `vxlan`, `bridge`, `veth`...; `None` for a physical device.
    pub kind: Option<String>,
    /// The interface alias (IFLA_IFALIAS), where sovereign writes its mark.
    pub alias: Option<String>,
    pub mtu: u32,
    /// Administratively up (IFF_UP).
    pub up: bool,
    /// The index of the bridge it is a port of.
    pub master: Option<u32>,
    /// VXLAN attributes, for a VXLAN device.
    pub vxlan: Option<Vxlan>,
}

/// The attributes of a VXLAN device that define its segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vxlan {
    pub vni: u32,
    pub local: Option<Ipv4Addr>,
    /// The index of the underlay device it is bound to.
    pub dev: Option<u32>,
    pub port: u16,
    pub group: Option<Ipv4Addr>,
    pub learning: bool,
}

/// An address on an interface.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Addr {
    pub index: u32,
    pub ip: IpAddr,
    pub prefix: u8,
}

/// A bridge forwarding entry (`bridge fdb`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fdb {
    pub index: u32,
    pub mac: [u8; 6],
    pub dst: Option<IpAddr>,
}

/// A VXLAN device to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVxlan {
    pub name: String,
    pub alias: String,
    pub vxlan: Vxlan,
    pub mtu: u32,
}

/// An open rtnetlink connection.
pub struct Netlink {
    /// The rtnetlink connection for changes and single lookups, opened on first use: a
    /// plan's dumps ([`dump`]) do not need it.
    connection: std::cell::OnceCell<(tokio::runtime::Runtime, Handle)>,
}

fn io_err(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("netlink: {what}: {e}"))
}

impl Netlink {
    /// Netlink in the calling thread's network namespace; sockets open when first used.
    pub fn open() -> io::Result<Netlink> {
        Ok(Netlink {
            connection: std::cell::OnceCell::new(),
        })
    }

    /// The rtnetlink connection, opened on the first call.
    #[allow(clippy::disallowed_methods)] // the one place a netlink socket is opened
    fn connection(&self) -> io::Result<(&tokio::runtime::Runtime, &Handle)> {
        if self.connection.get().is_none() {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()?;
            let (connection, handle, _) = {
                let _guard = runtime.enter();
                rtnetlink::new_connection()?
            };
            runtime.spawn(connection);
            let _ = self.connection.set((runtime, handle));
        }
        let (runtime, handle) = self.connection.get().expect("set just above");
        Ok((runtime, handle))
    }

    /// The link called `name`, if there is one (one request, not a dump).
    pub fn link(&self, name: &str) -> io::Result<Option<Link>> {
        let (runtime, handle) = self.connection()?;
        let found: Result<Vec<LinkMessage>, _> = runtime.block_on(
            handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute()
                .try_collect(),
        );
        match found {
            Ok(messages) => Ok(messages.first().map(link_of)),
            Err(rtnetlink::Error::NetlinkError(e))
                if e.code.map(|c| c.get()) == Some(-libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(io_err(&format!("look up link {name}"), e)),
        }
    }

    /// Every link (one dump), read for what sovereign uses of it.
    ///
    /// The three dumps a plan makes do not go through the crate's requests: its codec
    /// parses every attribute of every message into owned values (IPv6 device settings,
    /// a bridge's forty-odd settings, per-family statistics), most of a plan's time on a
    /// host with hundreds of links. [`dump`] sends the same requests on a socket of its
    /// own and each reader takes only the header fields and attributes sovereign uses,
    /// with the crate's parsers where it has them.
    pub fn links(&self) -> io::Result<Vec<Link>> {
        // Attribute numbers (linux/if_link.h) of what is read.
        const IFLA_IFNAME: u16 = 3;
        const IFLA_MTU: u16 = 4;
        const IFLA_MASTER: u16 = 10;
        const IFLA_LINKINFO: u16 = 18;
        const IFLA_IFALIAS: u16 = 20;
        use netlink_packet_core::ParseableParametrized;
        use netlink_packet_route::link::LinkHeader;

        let mut message = LinkMessage::default();
        // Without the statistics: nothing here reads them.
        message
            .attributes
            .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
        let mut out = Vec::new();
        dump(
            RouteNetlinkMessage::GetLink(message),
            RTM_NEWLINK,
            16,
            |header, attrs| {
                let header = LinkHeader::parse(header)?;
                let mut link = Link {
                    index: header.index,
                    name: String::new(),
                    kind: None,
                    alias: None,
                    mtu: 0,
                    up: header.flags.contains(LinkFlags::Up),
                    master: None,
                    vxlan: None,
                };
                for nla in NlasIterator::new(attrs) {
                    let nla = nla?;
                    match nla.kind() {
                        IFLA_LINKINFO => read_link_info(&mut link, nla.value())?,
                        IFLA_IFNAME | IFLA_MTU | IFLA_MASTER | IFLA_IFALIAS => {
                            let attribute =
                                LinkAttribute::parse_with_param(&nla, AddressFamily::Unspec)?;
                            read_attribute(&mut link, &attribute);
                        }
                        _ => {}
                    }
                }
                out.push(link);
                Ok(())
            },
        )
        .map_err(|e| io_err("dump links", e))?;
        Ok(out)
    }

    /// Every address of every link (one dump).
    pub fn addresses(&self) -> io::Result<Vec<Addr>> {
        // IFA_LOCAL is the interface's own address (IFA_ADDRESS is the peer's on a
        // point-to-point link); IPv6 has only IFA_ADDRESS.
        const IFA_ADDRESS: u16 = 1;
        const IFA_LOCAL: u16 = 2;
        let mut out = Vec::new();
        let request = RouteNetlinkMessage::GetAddress(AddressMessage::default());
        dump(request, RTM_NEWADDR, 8, |header, attrs| {
            // ifaddrmsg: family, prefix length, flags, scope, index.
            let prefix = header[1];
            let index = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
            let (mut address, mut local) = (None, None);
            for nla in NlasIterator::new(attrs) {
                let nla = nla?;
                match nla.kind() {
                    IFA_ADDRESS => address = ip_of(nla.value()),
                    IFA_LOCAL => local = ip_of(nla.value()),
                    _ => {}
                }
            }
            if let Some(ip) = local.or(address) {
                out.push(Addr { index, ip, prefix });
            }
            Ok(())
        })
        .map_err(|e| io_err("dump addresses", e))?;
        Ok(out)
    }

    /// Every bridge forwarding entry, VXLAN devices' included (one dump).
    pub fn fdb(&self) -> io::Result<Vec<Fdb>> {
        const NDA_DST: u16 = 1;
        const NDA_LLADDR: u16 = 2;
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        let mut out = Vec::new();
        dump(
            RouteNetlinkMessage::GetNeighbour(message),
            RTM_NEWNEIGH,
            12,
            |header, attrs| {
                // ndmsg: family, padding, ifindex, state, flags, type.
                let index = u32::from_ne_bytes([header[4], header[5], header[6], header[7]]);
                let (mut mac, mut dst) = (None, None);
                for nla in NlasIterator::new(attrs) {
                    let nla = nla?;
                    match nla.kind() {
                        NDA_LLADDR => mac = <[u8; 6]>::try_from(nla.value()).ok(),
                        NDA_DST => dst = ip_of(nla.value()),
                        _ => {}
                    }
                }
                if let Some(mac) = mac {
                    out.push(Fdb { index, mac, dst });
                }
                Ok(())
            },
        )
        .map_err(|e| io_err("dump forwarding entries", e))?;
        Ok(out)
    }

    /// Create a VXLAN device, up.
    pub fn add_vxlan(&self, new: &NewVxlan) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let v = &new.vxlan;
        let mut builder = LinkVxlan::new(&new.name, v.vni)
            .port(v.port)
            .learning(v.learning)
            .mtu(new.mtu)
            .up();
        if let Some(local) = v.local {
            builder = builder.local(local);
        }
        if let Some(dev) = v.dev {
            builder = builder.dev(dev);
        }
        if let Some(group) = v.group {
            builder = builder.group(group);
        }
        runtime
            .block_on(handle.link().add(builder.build()).execute())
            .map_err(|e| io_err(&format!("create VXLAN device {}", new.name), e))?;
        self.set_alias(&new.name, &new.alias)
    }

    /// Set a link's alias. The kernel reads IFLA_IFALIAS only when changing a link, never
    /// when creating one, so this is a request of its own after the creation.
    pub fn set_alias(&self, name: &str, alias: &str) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let message = LinkUnspec::new_with_name(name)
            .alias(alias.to_string())
            .build();
        runtime
            .block_on(handle.link().set(message).execute())
            .map_err(|e| io_err(&format!("set the alias of {name}"), e))
    }

    /// Create a bridge, up.
    pub fn add_bridge(&self, name: &str, alias: &str, mtu: u32) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let message = LinkBridge::new(name).mtu(mtu).up().build();
        runtime
            .block_on(handle.link().add(message).execute())
            .map_err(|e| io_err(&format!("create bridge {name}"), e))?;
        self.set_alias(name, alias)
    }

    /// Set a link's MTU and bring it up.
    pub fn set_mtu_up(&self, index: u32, mtu: u32) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let message = LinkUnspec::new_with_index(index).mtu(mtu).up().build();
        runtime
            .block_on(handle.link().set(message).execute())
            .map_err(|e| io_err(&format!("set link {index} up with MTU {mtu}"), e))
    }

    /// Make `index` a port of the bridge `master`.
    pub fn set_master(&self, index: u32, master: u32) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let message = LinkUnspec::new_with_index(index).controller(master).build();
        runtime
            .block_on(handle.link().set(message).execute())
            .map_err(|e| io_err(&format!("attach link {index} to bridge {master}"), e))
    }

    /// Take `index` out of its bridge.
    pub fn set_nomaster(&self, index: u32) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let message = LinkUnspec::new_with_index(index).nocontroller().build();
        runtime
            .block_on(handle.link().set(message).execute())
            .map_err(|e| io_err(&format!("detach link {index} from its bridge"), e))
    }

    /// Delete a link (its addresses and forwarding entries go with it).
    pub fn del_link(&self, index: u32) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        runtime
            .block_on(handle.link().del(index).execute())
            .map_err(|e| io_err(&format!("delete link {index}"), e))
    }

    pub fn add_address(&self, index: u32, ip: IpAddr, prefix: u8) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        runtime
            .block_on(handle.address().add(index, ip, prefix).execute())
            .map_err(|e| io_err(&format!("add {ip}/{prefix} to link {index}"), e))
    }

    pub fn del_address(&self, addr: &Addr) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let mut message = AddressMessage::default();
        message.header.family = match addr.ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        message.header.index = addr.index;
        message.header.prefix_len = addr.prefix;
        message.attributes.push(AddressAttribute::Address(addr.ip));
        message.attributes.push(AddressAttribute::Local(addr.ip));
        runtime
            .block_on(handle.address().del(message).execute())
            .map_err(|e| {
                io_err(
                    &format!(
                        "remove {}/{} from link {}",
                        addr.ip, addr.prefix, addr.index
                    ),
                    e,
                )
            })
    }

    /// Add the all-zero forwarding entry that sends a VXLAN device's broadcast, unknown
    /// and multicast frames to `dst` (head-end replication), with `append` semantics so
    /// several peers share the all-zero address.
    pub fn add_flood(&self, index: u32, dst: IpAddr) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let mut request = handle
            .neighbours()
            .add_bridge(index, &[0; 6])
            .destination(dst)
            .flags(NeighbourFlags::Own);
        // NLM_F_APPEND instead of NLM_F_EXCL: `bridge fdb append`. The crate has no
        // setter for it, so the request is built by hand (see ARCHITECTURE.md).
        let message = std::mem::take(request.message_mut());
        runtime
            .block_on(send_append(handle.clone(), message))
            .map_err(|e| io_err(&format!("add forwarding entry to {dst} on link {index}"), e))
    }

    /// Remove the all-zero forwarding entry to `dst`.
    pub fn del_flood(&self, index: u32, dst: IpAddr) -> io::Result<()> {
        let (runtime, handle) = self.connection()?;
        let mut message = NeighbourMessage::default();
        message.header.family = AddressFamily::Bridge;
        message.header.ifindex = index;
        message.header.state = NeighbourState::Permanent;
        message.header.flags = NeighbourFlags::Own;
        message
            .attributes
            .push(NeighbourAttribute::LinkLayerAddress(vec![0; 6]));
        message
            .attributes
            .push(NeighbourAttribute::Destination(neighbour_address(dst)));
        runtime
            .block_on(handle.neighbours().del(message).execute())
            .map_err(|e| {
                io_err(
                    &format!("remove forwarding entry to {dst} from link {index}"),
                    e,
                )
            })
    }
}

fn neighbour_address(ip: IpAddr) -> NeighbourAddress {
    match ip {
        IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
        IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
    }
}

async fn send_append(
    mut handle: Handle,
    message: NeighbourMessage,
) -> Result<(), rtnetlink::Error> {
    use futures_util::StreamExt;
    use netlink_packet_core::{
        NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
    };
    use netlink_packet_route::RouteNetlinkMessage;

    let mut request = NetlinkMessage::from(RouteNetlinkMessage::NewNeighbour(message));
    request.header.flags = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_APPEND;
    let mut response = handle.request(request)?;
    while let Some(message) = response.next().await {
        if let NetlinkPayload::Error(err) = message.payload {
            return Err(rtnetlink::Error::NetlinkError(err));
        }
    }
    Ok(())
}

/// The message types of a dump's answers (linux/rtnetlink.h).
const RTM_NEWLINK: u16 = 16;
const RTM_NEWADDR: u16 = 20;
const RTM_NEWNEIGH: u16 = 28;

/// Send `request` as a dump on a socket of its own and hand each answer of type
/// `answer` to `each`, split into its fixed header (`header_len` bytes) and attributes.
#[allow(clippy::disallowed_methods)] // the one place a netlink socket is opened
fn dump(
    request: RouteNetlinkMessage,
    answer: u16,
    header_len: usize,
    mut each: impl FnMut(&[u8], &[u8]) -> Result<(), DecodeError>,
) -> io::Result<()> {
    use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NetlinkBuffer};
    use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

    let bad = |what: String| io::Error::other(what);
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut message = NetlinkMessage::from(request);
    message.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    message.header.sequence_number = 1;
    message.finalize();
    let mut bytes = vec![0; message.header.length as usize];
    message.serialize(&mut bytes);
    socket.send(&bytes, 0)?;
    loop {
        let (data, _) = socket.recv_from_full()?;
        let mut at = 0;
        while at < data.len() {
            let frame = NetlinkBuffer::new_checked(&data[at..]).map_err(|e| bad(e.to_string()))?;
            let len = frame.length() as usize;
            match frame.message_type() {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let code = frame
                        .payload()
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .unwrap_or(0);
                    return Err(io::Error::from_raw_os_error(-code));
                }
                t if t == answer => {
                    let payload = frame.payload();
                    if payload.len() < header_len {
                        return Err(bad(format!(
                            "an answer of {} bytes, shorter than its header",
                            payload.len()
                        )));
                    }
                    let (header, attrs) = payload.split_at(header_len);
                    each(header, attrs).map_err(|e| bad(e.to_string()))?;
                }
                _ => {}
            }
            // Frames are 4-byte aligned; a zero length would never end.
            if len == 0 {
                return Err(bad("a frame of length 0".into()));
            }
            at += (len + 3) & !3;
        }
    }
}

/// An IPv4 or IPv6 address from its bytes.
fn ip_of(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: None,
        alias: None,
        mtu: 0,
        up: message.header.flags.contains(LinkFlags::Up),
        master: None,
        vxlan: None,
    };
    for attribute in &message.attributes {
        read_attribute(&mut link, attribute);
    }
    link
}

/// The kind of a link and, for a VXLAN device, its attributes, from the nested
/// IFLA_LINKINFO; a bridge's forty-odd settings are skipped, not parsed.
fn read_link_info(link: &mut Link, nested: &[u8]) -> Result<(), netlink_packet_core::DecodeError> {
    use netlink_packet_core::{NlasIterator, Parseable, parse_string};
    const IFLA_INFO_KIND: u16 = 1;
    const IFLA_INFO_DATA: u16 = 2;
    for nla in NlasIterator::new(nested) {
        let nla = nla?;
        match nla.kind() {
            IFLA_INFO_KIND => link.kind = Some(parse_string(nla.value())?),
            IFLA_INFO_DATA if link.kind.as_deref() == Some("vxlan") => {
                let mut data = Vec::new();
                for item in NlasIterator::new(nla.value()) {
                    data.push(InfoVxlan::parse(&item?)?);
                }
                link.vxlan = Some(vxlan_of(&data));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Take what sovereign reads of one link attribute.
fn read_attribute(link: &mut Link, attribute: &LinkAttribute) {
    match attribute {
        LinkAttribute::IfName(name) => link.name = name.clone(),
        LinkAttribute::IfAlias(alias) => link.alias = Some(alias.clone()),
        LinkAttribute::Mtu(mtu) => link.mtu = *mtu,
        LinkAttribute::Controller(master) => link.master = Some(*master),
        LinkAttribute::LinkInfo(infos) => {
            for info in infos {
                match info {
                    LinkInfo::Kind(kind) => link.kind = Some(kind_name(kind)),
                    LinkInfo::Data(InfoData::Vxlan(data)) => link.vxlan = Some(vxlan_of(data)),
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

fn kind_name(kind: &InfoKind) -> String {
    match kind {
        InfoKind::Other(name) => name.clone(),
        other => other.to_string(),
    }
}

fn vxlan_of(data: &[InfoVxlan]) -> Vxlan {
    let mut v = Vxlan {
        vni: 0,
        local: None,
        dev: None,
        port: 0,
        group: None,
        learning: true,
    };
    for item in data {
        match item {
            InfoVxlan::Id(vni) => v.vni = *vni,
            InfoVxlan::Local(ip) => v.local = Some(*ip),
            InfoVxlan::Link(dev) => v.dev = Some(*dev),
            InfoVxlan::Port(port) => v.port = *port,
            InfoVxlan::Group(ip) => v.group = Some(*ip),
            InfoVxlan::Learning(on) => v.learning = *on,
            _ => {}
        }
    }
    v
}
