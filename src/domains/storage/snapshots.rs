//! Snapshot policies: keep N hourly, daily, weekly and monthly snapshots (sanoid-style,
//! in UTC). `sovereign snapshot` takes the ones due and prunes the expired ones.
//!
//! Only snapshots named by the pattern below are ever touched:
//!
//! ```text
//! POOL/DATASET@sovereign-<period>-<YYYYMMDD>T<HHMMSS>Z
//! e.g.   tank/models@sovereign-daily-20261124T000000Z
//! ```
//!
//! `<period>` is `hourly`, `daily`, `weekly` or `monthly`; the time is when it was taken,
//! in UTC. A snapshot of a period is due when none was taken since the period began (the
//! hour, the day, the ISO week from Monday, the month). Pre-apply snapshots
//! (`@sovereign-pre-<generation>`) do not match and are never pruned.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, Datelike, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};
use serde::Serialize;

use crate::host::{Cmd, Host};
use crate::profile::SnapshotPolicy;

/// The four retention periods, shortest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Hourly,
    Daily,
    Weekly,
    Monthly,
}

pub const PERIODS: [Period; 4] = [
    Period::Hourly,
    Period::Daily,
    Period::Weekly,
    Period::Monthly,
];

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";

impl Period {
    pub fn word(self) -> &'static str {
        match self {
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
        }
    }

    fn keep(self, policy: &SnapshotPolicy) -> u32 {
        match self {
            Period::Hourly => policy.hourly,
            Period::Daily => policy.daily,
            Period::Weekly => policy.weekly,
            Period::Monthly => policy.monthly,
        }
    }

    /// When the period containing `t` began.
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        let day = t.date_naive();
        let midnight =
            |d: NaiveDate| Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0).expect("midnight exists"));
        match self {
            Period::Hourly => Utc.from_utc_datetime(
                &day.and_hms_opt(t.hour(), 0, 0)
                    .expect("the hour of a time exists"),
            ),
            Period::Daily => midnight(day),
            Period::Weekly => {
                midnight(day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday())))
            }
            Period::Monthly => midnight(day.with_day(1).expect("every month has a first day")),
        }
    }
}

/// The snapshot name (after the `@`) for a period and a time.
pub fn snapshot_name(period: Period, at: DateTime<Utc>) -> String {
    format!("sovereign-{}-{}", period.word(), at.format(TIME_FORMAT))
}

/// Read a name of the pattern back; `None` for every other snapshot.
pub fn parse_name(short: &str) -> Option<(Period, DateTime<Utc>)> {
    let rest = short.strip_prefix("sovereign-")?;
    let (word, time) = rest.split_once('-')?;
    let period = PERIODS.into_iter().find(|p| p.word() == word)?;
    let t = NaiveDateTime::parse_from_str(time, TIME_FORMAT).ok()?;
    Some((period, Utc.from_utc_datetime(&t)))
}

/// What one run does.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Run {
    /// Snapshots to take (`dataset@name`), in order.
    pub take: Vec<String>,
    /// Snapshots to destroy (`dataset@name`), oldest first.
    pub prune: Vec<String>,
}

/// Pure: given the time, each dataset's policy and its existing snapshots (short names),
/// what to take and what to prune.
pub fn decide(
    now: DateTime<Utc>,
    datasets: &BTreeMap<String, SnapshotPolicy>,
    existing: &BTreeMap<String, Vec<String>>,
) -> Run {
    let mut run = Run::default();
    for (dataset, policy) in datasets {
        let ours: Vec<(Period, DateTime<Utc>, &str)> = existing
            .get(dataset)
            .into_iter()
            .flatten()
            .filter_map(|s| parse_name(s).map(|(p, t)| (p, t, s.as_str())))
            .collect();
        for period in PERIODS {
            let keep = period.keep(policy) as usize;
            let mut mine: Vec<(DateTime<Utc>, String)> = ours
                .iter()
                .filter(|(p, _, _)| *p == period)
                .map(|(_, t, s)| (*t, s.to_string()))
                .collect();
            let due = keep > 0 && mine.iter().all(|(t, _)| *t < period.start(now));
            if due {
                let name = snapshot_name(period, now);
                run.take.push(format!("{dataset}@{name}"));
                mine.push((now, name));
            }
            mine.sort_by_key(|m| std::cmp::Reverse(m.0));
            let mut expired: Vec<String> = mine
                .into_iter()
                .skip(keep)
                .map(|(_, s)| format!("{dataset}@{s}"))
                .collect();
            expired.reverse();
            run.prune.extend(expired);
        }
    }
    // A snapshot due now and expired at once (keep 0) is never taken.
    let pruned: std::collections::BTreeSet<&String> = run.prune.iter().collect();
    let take: Vec<String> = run
        .take
        .iter()
        .filter(|t| !pruned.contains(t))
        .cloned()
        .collect();
    let prune: Vec<String> = run
        .prune
        .iter()
        .filter(|p| !run.take.contains(p))
        .cloned()
        .collect();
    Run { take, prune }
}

/// What `sovereign snapshot` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The clock the run used (RFC 3339, UTC).
    pub now: String,
    /// Snapshots taken.
    pub taken: Vec<String>,
    /// Snapshots destroyed.
    pub pruned: Vec<String>,
}

/// Observe the snapshots of the pools holding `datasets` (one `zfs get type -r`), then
/// take and prune.
pub fn run(
    host: &dyn Host,
    now: DateTime<Utc>,
    datasets: &BTreeMap<String, SnapshotPolicy>,
) -> Result<Report> {
    let mut report = Report {
        now: now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        ..Report::default()
    };
    if datasets.is_empty() {
        return Ok(report);
    }
    let mut argv: Vec<String> = ["zfs", "get", "-H", "-p", "-o", "name,value", "type", "-r"]
        .map(String::from)
        .to_vec();
    argv.extend(datasets.keys().cloned());
    let listing = must(host, argv)?;
    let mut existing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in listing.lines() {
        let name = line.split('\t').next().unwrap_or("");
        if let Some((ds, snap)) = name.split_once('@') {
            if datasets.contains_key(ds) {
                existing
                    .entry(ds.to_string())
                    .or_default()
                    .push(snap.to_string());
            }
        }
    }
    let plan = decide(now, datasets, &existing);
    for snap in plan.take {
        must(host, vec!["zfs".into(), "snapshot".into(), snap.clone()])?;
        report.taken.push(snap);
    }
    for snap in plan.prune {
        must(host, vec!["zfs".into(), "destroy".into(), snap.clone()])?;
        report.pruned.push(snap);
    }
    Ok(report)
}

fn must(host: &dyn Host, argv: Vec<String>) -> Result<String> {
    let cmd = Cmd::new(argv).timeout(Duration::from_secs(120));
    let out = host
        .run(&cmd)
        .with_context(|| format!("cannot run `{}`", cmd.display()))?;
    if !out.success() {
        bail!("`{}` failed: {}", cmd.display(), out.stderr_str().trim());
    }
    Ok(out.stdout_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn policy(hourly: u32, daily: u32) -> BTreeMap<String, SnapshotPolicy> {
        BTreeMap::from([(
            "tank/a".to_string(),
            SnapshotPolicy {
                hourly,
                daily,
                ..SnapshotPolicy::default()
            },
        )])
    }

    #[test]
    fn names_round_trip_and_others_are_ignored() {
        let t = at("2026-11-24T20:15:00Z");
        let n = snapshot_name(Period::Daily, t);
        assert_eq!(n, "sovereign-daily-20261124T201500Z");
        assert_eq!(parse_name(&n), Some((Period::Daily, t)));
        assert_eq!(parse_name("sovereign-pre-3"), None);
        assert_eq!(parse_name("manual"), None);
    }

    #[test]
    fn periods_start_in_utc() {
        let t = at("2026-11-26T20:15:07Z"); // a Thursday
        assert_eq!(Period::Hourly.start(t), at("2026-11-26T20:00:00Z"));
        assert_eq!(Period::Daily.start(t), at("2026-11-26T00:00:00Z"));
        assert_eq!(Period::Weekly.start(t), at("2026-11-23T00:00:00Z"));
        assert_eq!(Period::Monthly.start(t), at("2026-11-01T00:00:00Z"));
    }

    #[test]
    fn due_snapshots_are_taken_once_per_period() {
        let now = at("2026-11-24T20:15:00Z");
        let run = decide(now, &policy(2, 1), &BTreeMap::new());
        assert_eq!(
            run.take,
            [
                "tank/a@sovereign-hourly-20261124T201500Z",
                "tank/a@sovereign-daily-20261124T201500Z"
            ]
        );
        let existing = BTreeMap::from([(
            "tank/a".to_string(),
            vec![
                "sovereign-hourly-20261124T201500Z".to_string(),
                "sovereign-daily-20261124T201500Z".to_string(),
            ],
        )]);
        let later = decide(at("2026-11-24T20:59:00Z"), &policy(2, 1), &existing);
        assert_eq!(later, Run::default());
    }

    #[test]
    fn the_oldest_beyond_keep_are_pruned_and_foreign_ones_never() {
        let existing = BTreeMap::from([(
            "tank/a".to_string(),
            vec![
                "sovereign-hourly-20261124T180000Z".to_string(),
                "sovereign-hourly-20261124T190000Z".to_string(),
                "manual-backup".to_string(),
                "sovereign-pre-4".to_string(),
            ],
        )]);
        let run = decide(at("2026-11-24T20:00:00Z"), &policy(2, 0), &existing);
        assert_eq!(run.take, ["tank/a@sovereign-hourly-20261124T200000Z"]);
        assert_eq!(run.prune, ["tank/a@sovereign-hourly-20261124T180000Z"]);
    }
}
