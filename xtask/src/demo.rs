//! `cargo xtask demo`: the README's first command. Plan, apply and plan again (no
//! changes) on profiles/demo.toml under the demo's own state root, then chat with the
//! inference daemon serving the demo's generated model from the cache.
//!
//! Where systemd runs PID 1 (and the root is the machine's), apply starts the daemon from
//! its unit; everywhere else, and always under the demo's `--root`, the systemd steps are
//! not applicable, so the demo starts `sovereign serve` itself with the options apply
//! rendered into the unit, chats, and stops it (SIGTERM) after.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::gen_model;
use crate::{cargo, project_root, run_step, setup};
use sovereign_gguf::model as gguf;

/// The demo pool's only vdev: a sparse file the profile names (relocated under --root).
const DEMO_POOL: &str = "sovereign-demo";
const DEMO_VDEV: &str = "var/lib/sovereign/demo/tank.img";
/// The demo model: generated with a fixed seed, so its bytes (and the sha256 the profile
/// pins) never change.
const DEMO_MODEL: &str = "var/lib/sovereign/demo/tiny.gguf";
const DEMO_MODEL_SEED: u64 = 42;
/// The unit apply renders for the daemon (under the root).
const DEMO_UNIT: &str = "etc/systemd/system/sovereign-inference.service";
/// How long the daemon may take to answer /health.
const READY_WITHIN: Duration = Duration::from_secs(120);

pub fn run(args: &[String]) -> Result<()> {
    let state_root = project_root().join(".demo/root");
    if args.first().map(String::as_str) == Some("clean") {
        return clean(&state_root);
    }
    setup::run()?;
    let mut build = cargo();
    build.args(["build", "--bin", "sovereign"]);
    run_step(build)?;
    let root = project_root();
    let bin = root.join("target/debug/sovereign");
    let profile = root.join("profiles/demo.toml");
    std::fs::create_dir_all(&state_root)
        .with_context(|| format!("cannot create {}", state_root.display()))?;
    pool_file(&state_root)?;
    model_file(&state_root, &profile)?;
    let sovereign = |args: &[&str]| {
        let mut cmd = Command::new(&bin);
        cmd.arg("--root").arg(&state_root).args(args).arg(&profile);
        cmd
    };
    run_step(sovereign(&["plan"]))?;
    run_step(sovereign(&["apply", "--yes"]))?;
    // The second plan must show no changes: --detailed-exitcode exits 2 otherwise. The
    // systemd steps listed as not applicable are not changes.
    run_step(sovereign(&["plan", "--detailed-exitcode"]))?;
    let answer = chat(&bin, &state_root)?;
    eprintln!(
        "\ndemo: done. The daemon served the model \"tiny\" from the cache under {root}/var/lib/sovereign/models\n      \
         and answered: {answer:?}\n      \
         (a generated model whose weights follow a designed greedy path, not a trained one).\n      \
         Managed files are under {root}/ (e.g. {root}/etc/motd, the daemon's unit\n      \
         {root}/{DEMO_UNIT});\n      \
         sovereign's state (ledger, journal, generations, backups) is in {root}/var/lib/sovereign/.\n      \
         List the generations: {bin} --root {root} generations\n      \
         Remove the demo (its pool and state): cargo xtask demo clean",
        root = state_root.display(),
        bin = bin.display()
    );
    Ok(())
}

fn pool_file(state_root: &Path) -> Result<()> {
    let img = state_root.join(DEMO_VDEV);
    if img.exists() {
        return Ok(());
    }
    let dir = img.parent().expect("the vdev path has a folder");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let file =
        std::fs::File::create(&img).with_context(|| format!("cannot create {}", img.display()))?;
    file.set_len(256 << 20)
        .with_context(|| format!("cannot size {}", img.display()))?;
    eprintln!(
        "demo: created the sparse pool file {} (256M)",
        img.display()
    );
    Ok(())
}

/// The sha256 the demo profile pins for its model `tiny`.
fn demo_model_pin(profile: &Path) -> Result<String> {
    let text = std::fs::read_to_string(profile)
        .with_context(|| format!("cannot read {}", profile.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", profile.display()))?;
    table
        .get("inference")
        .and_then(|i| i.get("models"))
        .and_then(|m| m.get("tiny"))
        .and_then(|t| t.get("sha256"))
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .with_context(|| {
            format!(
                "{} pins no sha256 for inference.models.tiny",
                profile.display()
            )
        })
}

/// Write the demo model where the profile's `source` points (under the root) and check
/// its bytes are the ones the profile pins.
fn model_file(state_root: &Path, profile: &Path) -> Result<()> {
    let path = state_root.join(DEMO_MODEL);
    if !path.exists() {
        let dir = path.parent().expect("the model path has a folder");
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        gen_model::write(&gguf::ModelSpec::tiny(DEMO_MODEL_SEED), &path)?;
        eprintln!("demo: generated the model {}", path.display());
    }
    let pin = demo_model_pin(profile)?;
    let out = Command::new("sha256sum")
        .arg(&path)
        .output()
        .context("cannot run sha256sum")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let sha = text.split_whitespace().next().unwrap_or_default();
    if sha != pin {
        bail!(
            "{} has sha256 {sha}, but {} pins {pin}: the generator's output changed; \
             update the pin in the profile",
            path.display(),
            profile.display()
        );
    }
    Ok(())
}

/// Start the daemon with the options apply rendered into its unit, wait for /health,
/// send one chat completion and stop the daemon; return the answer.
fn chat(bin: &Path, state_root: &Path) -> Result<String> {
    let unit_path = state_root.join(DEMO_UNIT);
    let unit = std::fs::read_to_string(&unit_path)
        .with_context(|| format!("apply did not render {}", unit_path.display()))?;
    let port = free_port()?;
    let args = serve_args(&unit, port, state_root)?;
    let log = state_root.join("var/log/sovereign-serve.log");
    std::fs::create_dir_all(log.parent().expect("the log has a folder"))?;
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.arg("--root")
        .arg(state_root)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    eprintln!(
        "\n==> no systemd here: starting the daemon as its unit would\n    {} --root {} {}",
        bin.display(),
        state_root.display(),
        args.join(" ")
    );
    let child = cmd.spawn().context("cannot start sovereign serve")?;
    let mut daemon = Daemon(Some(child));
    let base = format!("127.0.0.1:{port}");
    let result = (|| {
        wait_ready(&base, &mut daemon, &log)?;
        // What apply's health check asks where systemd runs the daemon.
        let (status, models) = http(&base, "GET", "/v1/models", None)?;
        if status != 200 || !models.contains("\"tiny\"") {
            bail!("/v1/models answered {status} without the model \"tiny\": {models}");
        }
        eprintln!("demo: /v1/models lists \"tiny\", served from the cache");
        let body = r#"{"model":"tiny","messages":[{"role":"user","content":"Who serves you?"}],"max_tokens":48,"temperature":0}"#;
        eprintln!("==> POST http://{base}/v1/chat/completions {body}");
        let (status, reply) = http(&base, "POST", "/v1/chat/completions", Some(body))?;
        if status != 200 {
            bail!("the chat completion answered {status}: {reply}");
        }
        let json: serde_json::Value = serde_json::from_str(&reply)
            .with_context(|| format!("the chat completion is not JSON: {reply}"))?;
        let answer = json["choices"][0]["message"]["content"]
            .as_str()
            .with_context(|| format!("no choices[0].message.content in {reply}"))?
            .to_string();
        eprintln!("demo: tiny answered: {answer}");
        Ok(answer)
    })();
    let stopped = daemon.stop();
    let answer = result?;
    stopped?;
    Ok(answer)
}

/// The daemon's argv from the unit's ExecStart, listening on `port`, with the options file
/// apply rendered under the demo's root (the unit names it as on a real machine).
fn serve_args(unit: &str, port: u16, state_root: &Path) -> Result<Vec<String>> {
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .context("the unit has no ExecStart")?;
    let mut words = exec.split_whitespace();
    words.next(); // the binary
    let mut args = Vec::new();
    while let Some(w) = words.next() {
        args.push(w.to_string());
        match w {
            "--listen" => {
                words.next();
                args.push(format!("127.0.0.1:{port}"));
            }
            "--models" => {
                let file = words
                    .next()
                    .context("--models without a file in ExecStart")?;
                let under_root = state_root.join(file.trim_start_matches('/'));
                args.push(under_root.display().to_string());
            }
            _ => {}
        }
    }
    Ok(args)
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot find a free port")?;
    Ok(listener.local_addr()?.port())
}

fn wait_ready(base: &str, daemon: &mut Daemon, log: &Path) -> Result<()> {
    let start = Instant::now();
    loop {
        if let Ok((200, _)) = http(base, "GET", "/health", None) {
            eprintln!(
                "demo: the daemon answers http://{base}/health ({:.1}s after start)",
                start.elapsed().as_secs_f64()
            );
            return Ok(());
        }
        if let Some(status) = daemon.exited()? {
            bail!(
                "sovereign serve exited ({status}) before answering; see {}:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if start.elapsed() > READY_WITHIN {
            bail!(
                "sovereign serve did not answer /health within {}s; see {}",
                READY_WITHIN.as_secs(),
                log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One HTTP/1.1 request on a fresh connection (the demo's client needs nothing more).
fn http(base: &str, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(base)?;
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.unwrap_or("");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {base}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut reply = String::new();
    stream.read_to_string(&mut reply)?;
    let (head, rest) = reply
        .split_once("\r\n\r\n")
        .with_context(|| format!("not an HTTP answer: {reply:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    Ok((status, rest.to_string()))
}

/// The daemon the demo started; stopped with SIGTERM, killed if it is still there when
/// the demo leaves early.
struct Daemon(Option<Child>);

impl Daemon {
    fn exited(&mut self) -> Result<Option<std::process::ExitStatus>> {
        match &mut self.0 {
            Some(c) => Ok(c.try_wait()?),
            None => Ok(None),
        }
    }

    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.0.take() else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("cannot run kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let exit = child.wait()?;
        eprintln!("demo: stopped the daemon (SIGTERM; it exited with {exit})");
        Ok(())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            // Leaving early (an error above): never leave the daemon behind.
            if child.kill().is_ok() {
                let _reaped = child.wait();
            }
        }
    }
}

/// `cargo xtask demo clean`: destroy the demo pool, then remove the demo's state root
/// (the generated model, the cache and the rendered units are inside it).
fn clean(state_root: &Path) -> Result<()> {
    let listed = Command::new("zpool")
        .args(["list", "-H", "-o", "name", DEMO_POOL])
        .output();
    if listed.is_ok_and(|o| o.status.success()) {
        let mut destroy = Command::new("zpool");
        destroy.args(["destroy", DEMO_POOL]);
        run_step(destroy)?;
    }
    if state_root.exists() {
        std::fs::remove_dir_all(state_root)
            .with_context(|| format!("cannot remove {}", state_root.display()))?;
    }
    // `.demo/` itself, once empty (the README promises it goes).
    let demo_dir = state_root.parent().expect("the state root is .demo/root");
    let _ = std::fs::remove_dir(demo_dir);
    eprintln!(
        "demo: cleaned ({} and the pool {DEMO_POOL} are gone)",
        demo_dir.display()
    );
    Ok(())
}
