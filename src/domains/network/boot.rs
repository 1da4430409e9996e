//! Segments after a reboot. A VXLAN device, its bridge, addresses and forwarding entries
//! live only in the running kernel, so while the profile declares a segment the domain
//! asks for `sovereign-activate.service`: a oneshot that runs `sovereign activate` at boot,
//! once the network is online, converging the machine back to its current generation.
//!
//! The unit is enabled, never started or stopped by apply (an apply holds the lock
//! `activate` would wait for, and has just made the links itself; and `activate` at boot
//! plans this unit while it runs it), and it does not stay active after it ran.

use crate::domain::{PlanContext, Requests, UnitRequest};

pub const UNIT: &str = "sovereign-activate";
const TEMPLATE: &str = include_str!("../../../templates/sovereign-activate.service.j2");

pub fn requests(cx: &PlanContext<'_>, out: &mut Requests) -> anyhow::Result<()> {
    let declared = cx
        .profile
        .profile
        .network
        .as_ref()
        .is_some_and(|n| !n.vxlan.is_empty());
    if !declared {
        return Ok(());
    }
    let unit = crate::domain::template::render(
        TEMPLATE,
        "sovereign-activate.service.j2",
        minijinja::context! { exe => cx.exe.to_string_lossy() },
    )?;
    let mut request = UnitRequest::new(UNIT, unit.into_bytes(), "network.vxlan");
    request.start = false;
    request.oneshot = true;
    out.unit(request);
    Ok(())
}
