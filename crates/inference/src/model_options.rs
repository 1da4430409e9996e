//! Per-model load options: the `--models FILE` format of `sovereign serve` and what a
//! `model load` request may set. One definition, shared by the daemon and whatever renders
//! the file (the profile's `[inference]` section).
//!
//! ```toml
//! [models.tiny]          # a name in the model cache
//! context = 2048         # optional, context length per slot (`ctx` is read too)
//! gpu_layers = "auto"    # optional, "auto" or an integer
//! ttl = "10m"            # optional, idle time before unload
//! preload = true         # optional, load at start
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::units::Duration;

/// Smallest and largest context length per slot a model may be loaded with (the one
/// definition is [`super::limits::CONTEXT`]).
pub const CTX_RANGE: std::ops::RangeInclusive<u32> = {
    let (min, max) = super::limits::CONTEXT.kind.range();
    (min as u32)..=(max as u32)
};

/// GPU offload: every layer the build can offload, or a layer count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GpuLayers {
    #[default]
    Auto,
    Count(u32),
}

impl GpuLayers {
    /// The engine's form: `None` offloads all that the build supports.
    pub fn as_option(self) -> Option<u32> {
        match self {
            GpuLayers::Auto => None,
            GpuLayers::Count(n) => Some(n),
        }
    }
}

impl std::str::FromStr for GpuLayers {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s == "auto" {
            return Ok(GpuLayers::Auto);
        }
        s.parse()
            .map(GpuLayers::Count)
            .map_err(|_| format!("{s:?} is neither a number of layers nor `auto`"))
    }
}

impl std::fmt::Display for GpuLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GpuLayers::Auto => f.write_str("auto"),
            GpuLayers::Count(n) => write!(f, "{n}"),
        }
    }
}

impl Serialize for GpuLayers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            GpuLayers::Auto => s.serialize_str("auto"),
            GpuLayers::Count(n) => s.serialize_u32(*n),
        }
    }
}

impl<'de> Deserialize<'de> for GpuLayers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(GpuLayers::Count(n)),
            Raw::Word(w) => w.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Defaults for one model, from `--models FILE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelOptions {
    /// Context length per slot, in tokens (`ctx`, the old spelling, is read too).
    #[serde(default, alias = "ctx", skip_serializing_if = "Option::is_none")]
    pub context: Option<u32>,
    /// Layers to offload to the GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_layers: Option<GpuLayers>,
    /// Idle time before the model is unloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Load at daemon start instead of on the first request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preload: bool,
}

/// The whole `--models FILE`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelsFile {
    #[serde(default)]
    pub models: BTreeMap<String, ModelOptions>,
}

impl ModelsFile {
    /// Parse `text`, read from `origin`; errors name the origin and line.
    pub fn parse(text: &str, origin: &str) -> Result<ModelsFile, String> {
        let file: ModelsFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let place = match line {
                Some(l) => format!("{origin}:{l}"),
                None => origin.to_string(),
            };
            format!("{place}: {}", e.message())
        })?;
        for (name, opts) in &file.models {
            if let Some(context) = opts.context {
                if !CTX_RANGE.contains(&context) {
                    return Err(format!(
                        "{origin}: models.{name}.context = {context} is outside {}..={}",
                        CTX_RANGE.start(),
                        CTX_RANGE.end()
                    ));
                }
            }
            let what = format!("models.{name}.ttl");
            if let Some(why) = opts
                .ttl
                .and_then(|t| super::limits::ttl_problem(&what, t.as_std()))
            {
                return Err(format!("{origin}: {why}"));
            }
        }
        Ok(file)
    }

    /// Read and parse the file at `path`.
    pub fn load(path: &Path) -> Result<ModelsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the models file {}: {e}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_key() {
        let f = ModelsFile::parse(
            "[models.tiny]\ncontext = 2048\ngpu_layers = \"auto\"\nttl = \"10m\"\npreload = true\n\n[models.big]\ngpu_layers = 12\n",
            "m.toml",
        )
        .unwrap();
        let tiny = &f.models["tiny"];
        assert_eq!(tiny.context, Some(2048));
        assert_eq!(tiny.gpu_layers, Some(GpuLayers::Auto));
        assert_eq!(tiny.ttl.unwrap().as_std().as_secs(), 600);
        assert!(tiny.preload);
        assert_eq!(f.models["big"].gpu_layers, Some(GpuLayers::Count(12)));
        assert!(!f.models["big"].preload);
        let again = ModelsFile::parse(&toml::to_string(&f).unwrap(), "x").unwrap();
        assert_eq!(again, f);
        let old = ModelsFile::parse("[models.tiny]\nctx = 2048\n", "m.toml").unwrap();
        assert_eq!(
            old.models["tiny"].context,
            Some(2048),
            "the old spelling is read"
        );
        assert!(toml::to_string(&old).unwrap().contains("context = 2048"));
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let e = ModelsFile::parse(
            "[models.tiny]\ncontext = 2048\nctxt = 4096\n",
            "/etc/m.toml",
        )
        .unwrap_err();
        assert!(e.starts_with("/etc/m.toml:3:"), "{e}");
        assert!(e.contains("ctxt"), "{e}");
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let e = ModelsFile::parse("[models.a]\ngpu_layers = \"most\"\n", "m.toml").unwrap_err();
        assert!(e.contains("m.toml:2") && e.contains("most"), "{e}");
        let e = ModelsFile::parse("[models.a]\nttl = \"10\"\n", "m.toml").unwrap_err();
        assert!(e.contains("m.toml:2") && e.contains("no unit"), "{e}");
        let e = ModelsFile::parse("[models.a]\ncontext = 8\n", "m.toml").unwrap_err();
        assert!(e.contains("models.a.context"), "{e}");
        let e = ModelsFile::parse("[engines.a]\n", "m.toml").unwrap_err();
        assert!(e.contains("m.toml:1") && e.contains("engines"), "{e}");
    }
}
