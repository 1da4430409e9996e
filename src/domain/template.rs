//! The one template environment of every domain that renders profile templates, and the
//! context they render with (the profile, plus `facts`).

use std::collections::BTreeMap;

use anyhow::Context;
use minijinja::{Environment, UndefinedBehavior};

use crate::hardware::Facts;
use crate::profile::Profile;

/// Undefined values are errors, files keep their trailing newline, and `templates`
/// (name -> source) can be included by name.
pub fn environment(templates: &BTreeMap<String, String>) -> anyhow::Result<Environment<'static>> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    for (name, text) in templates {
        env.add_template_owned(name.clone(), text.clone())
            .with_context(|| format!("template {name:?} does not parse"))?;
    }
    Ok(env)
}

/// Render one template built into the binary (`templates/NAME`, by `include_str!`) with
/// `context`: the units and files domains ask for.
pub fn render(template: &str, name: &str, context: minijinja::Value) -> anyhow::Result<String> {
    let env = environment(&BTreeMap::from([(name.to_string(), template.to_string())]))?;
    env.get_template(name)?
        .render(context)
        .with_context(|| format!("cannot render {name}"))
}

/// The profile as templates see it, with the machine's facts under `facts`.
pub fn context(profile: &Profile, facts: &Facts) -> anyhow::Result<minijinja::Value> {
    let mut context = serde_json::to_value(profile)?;
    if let Some(map) = context.as_object_mut() {
        map.insert("facts".into(), serde_json::to_value(facts)?);
    }
    Ok(minijinja::Value::from(minijinja::value::Serde(context)))
}
