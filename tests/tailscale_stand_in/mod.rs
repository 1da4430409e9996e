//! A stand-in for the `tailscale` CLI, shared by the network tests: no tailscaled can be
//! installed on these machines. A small program that keeps the node's state in a file
//! between calls, answers `status --json` and `debug prefs` in the documented shapes, takes
//! `up` (refusing, like the real one, an `up` that does not repeat every non-default
//! setting, and a login without an auth key) and `set` (refusing the flags only `up`
//! takes), and logs every argument list it gets.

#![allow(dead_code)] // each test file uses a different part
#![allow(clippy::disallowed_methods)] // writes the stand-in and its state

use std::path::{Path, PathBuf};

pub const SCRIPT: &str = r#"#!/usr/bin/env python3
# Stand-in for the tailscale CLI, for sovereign's tests (no tailscaled can run here).
import json, os, sys

state_path = os.environ["TS_STANDIN_STATE"]
with open(os.environ["TS_STANDIN_LOG"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\n")
with open(state_path) as f:
    st = json.load(f)
prefs = st["prefs"]
args = sys.argv[1:]
EXIT = ["0.0.0.0/0", "::/0"]
DEFAULT = {"ControlURL": "https://controlplane.tailscale.com", "RouteAll": False,
           "CorpDNS": True, "RunSSH": False, "Hostname": "", "AdvertiseTags": None,
           "AdvertiseRoutes": None, "ExitNodeIP": ""}

def save():
    with open(state_path, "w") as f:
        json.dump(st, f)

def flags(rest):
    out = {}
    for a in rest:
        if not a.startswith("--") or "=" not in a:
            sys.exit("stand-in: unexpected argument " + a)
        k, v = a[2:].split("=", 1)
        out[k] = v
    return out

def apply(fl):
    routes = [r for r in (prefs.get("AdvertiseRoutes") or []) if r not in EXIT]
    exit_offer = any(r in EXIT for r in (prefs.get("AdvertiseRoutes") or []))
    for k, v in fl.items():
        b = v == "true"
        if k == "hostname": prefs["Hostname"] = v
        elif k == "advertise-tags": prefs["AdvertiseTags"] = v.split(",") if v else None
        elif k == "advertise-routes": routes = v.split(",") if v else []
        elif k == "advertise-exit-node": exit_offer = b
        elif k == "accept-routes": prefs["RouteAll"] = b
        elif k == "accept-dns": prefs["CorpDNS"] = b
        elif k == "ssh": prefs["RunSSH"] = b
        elif k == "exit-node": prefs["ExitNodeIP"] = v
        elif k == "login-server": prefs["ControlURL"] = v
        elif k == "auth-key": pass
        else: sys.exit("stand-in: unknown flag --" + k)
    all_routes = routes + (EXIT if exit_offer else [])
    prefs["AdvertiseRoutes"] = all_routes or None

if args[:2] == ["status", "--json"]:
    running = st["state"] == "Running"
    print(json.dumps({"BackendState": st["state"],
                      "Self": {"HostName": prefs["Hostname"],
                               "TailscaleIPs": st.get("self_ips", ["100.64.0.9"]) if running else None},
                      "Peer": st.get("peers", {})}))
elif args[:2] == ["debug", "prefs"]:
    print(json.dumps(prefs))
elif args[:1] == ["up"]:
    rest = args[1:]
    reset = "--reset" in rest
    fl = flags([a for a in rest if a != "--reset"])
    if reset:
        prefs.update(DEFAULT)
    elif st["state"] == "Running":
        flag_of = {"Hostname": "hostname", "AdvertiseTags": "advertise-tags", "RouteAll": "accept-routes",
                   "CorpDNS": "accept-dns", "RunSSH": "ssh", "ControlURL": "login-server"}
        missing = [f for p, f in flag_of.items() if prefs.get(p) != DEFAULT[p] and f not in fl]
        if missing:
            sys.exit("Error: changing settings via 'tailscale up' requires mentioning all non-default flags: --" + " --".join(missing))
    if prefs["LoggedOut"]:
        key = fl.get("auth-key", "")
        if not key.startswith("file:"):
            sys.exit("stand-in: this node needs to log in: give --auth-key=file:PATH")
        with open(key[5:]) as f:
            if not f.read().strip().startswith("tskey-"):
                sys.exit("stand-in: the auth key is invalid")
        prefs["LoggedOut"] = False
    apply(fl)
    prefs["WantRunning"] = True
    st["state"] = "Running"
    save()
elif args[:1] == ["set"]:
    fl = flags(args[1:])
    for only_up in ("advertise-tags", "login-server", "auth-key"):
        if only_up in fl:
            sys.exit("flag provided but not defined: -" + only_up)
    apply(fl)
    save()
else:
    sys.exit("stand-in: unexpected " + " ".join(args))
"#;

/// An installed stand-in: its folder (to put first on PATH), state file and call log.
pub struct StandIn {
    pub bin: PathBuf,
    pub state: PathBuf,
    pub log: PathBuf,
}

impl StandIn {
    /// Install the stand-in under `dir` with the node in `state` (`{"state": ...,
    /// "prefs": ..., "self_ips": [...], "peers": {...}}`; the last two optional).
    pub fn new(dir: &Path, state: serde_json::Value) -> StandIn {
        let bin = dir.join("stand-in-bin");
        std::fs::create_dir_all(&bin).unwrap();
        let tool = bin.join("tailscale");
        std::fs::write(&tool, SCRIPT).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        let s = StandIn {
            bin,
            state: dir.join("stand-in-state.json"),
            log: dir.join("stand-in-calls.log"),
        };
        std::fs::write(&s.state, state.to_string()).unwrap();
        std::fs::write(&s.log, "").unwrap();
        s
    }

    /// The environment a sovereign run needs to find it: PATH first, then its files.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "PATH".into(),
                format!(
                    "{}:{}",
                    self.bin.display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            ),
            ("TS_STANDIN_STATE".into(), self.state.display().to_string()),
            ("TS_STANDIN_LOG".into(), self.log.display().to_string()),
        ]
    }

    /// The argument lists it got since the last call of this.
    pub fn calls(&self) -> Vec<Vec<String>> {
        let text = std::fs::read_to_string(&self.log).unwrap();
        std::fs::write(&self.log, "").unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

/// Preferences of a node that never logged in, as `tailscale debug prefs` prints them.
pub fn logged_out_prefs() -> serde_json::Value {
    serde_json::json!({
        "ControlURL": "https://controlplane.tailscale.com", "RouteAll": false, "CorpDNS": true,
        "RunSSH": false, "WantRunning": false, "LoggedOut": true, "Hostname": "",
        "AdvertiseTags": null, "AdvertiseRoutes": null, "ExitNodeIP": "", "ExitNodeID": ""
    })
}
