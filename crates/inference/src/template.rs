//! Chat formatting: the model's `tokenizer.chat_template` rendered with minijinja in a
//! sandbox (no loader, so no file or network access; fuel bounds time, a recursion limit
//! bounds depth, a capped writer bounds output). A failure is that request's error only.

use minijinja::{Environment, ErrorKind, Value, context};
use serde::Serialize;

/// The template used when a model carries none: ChatML, which the generated test models
/// and many instruction-tuned models use.
pub const DEFAULT_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Instructions a template may execute per render; a real chat template needs a few
/// thousand, a template that loops forever runs out.
const FUEL: u64 = 200_000;
/// Nesting depth of loops, macros and calls.
const RECURSION_LIMIT: usize = 64;
/// Largest rendered prompt in bytes.
pub const MAX_OUTPUT: usize = 1 << 20;

/// One chat message as the template sees it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    fn to_value(&self) -> Value {
        let mut m = std::collections::BTreeMap::new();
        m.insert("role".to_string(), Value::from(self.role.as_str()));
        m.insert("content".to_string(), Value::from(self.content.as_str()));
        Value::from(m)
    }
}

/// A model's chat template, checked to parse at load time.
#[derive(Debug, Clone)]
pub struct ChatTemplate {
    /// The Jinja source (the model's own or [`DEFAULT_TEMPLATE`]).
    source: String,
    /// Special-token strings templates commonly reference.
    bos: String,
    eos: String,
}

/// Why a template could not render a conversation.
#[derive(Debug, thiserror::Error)]
#[error("chat template failed: {0}")]
pub struct TemplateError(pub String);

impl ChatTemplate {
    /// `source` is the model's template or `None` for the documented default.
    pub fn new(source: Option<String>, bos: String, eos: String) -> Self {
        ChatTemplate {
            source: source.unwrap_or_else(|| DEFAULT_TEMPLATE.into()),
            bos,
            eos,
        }
    }

    /// The same special tokens with another template (a Card's own).
    pub fn with_source(&self, source: String) -> Self {
        ChatTemplate {
            source,
            bos: self.bos.clone(),
            eos: self.eos.clone(),
        }
    }

    fn environment<'s>() -> Environment<'s> {
        // `Environment::new` has no loader: `include`/`import`/`extends` find nothing.
        let mut env = Environment::new();
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(RECURSION_LIMIT);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<Value, minijinja::Error> {
                Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
            },
        );
        env
    }

    /// Render the conversation with the generation prompt appended.
    pub fn render(&self, messages: &[ChatMessage]) -> Result<String, TemplateError> {
        let env = Self::environment();
        let tmpl = env.template_from_str(&self.source).map_err(describe)?;
        let mut out = CappedWriter { buf: Vec::new() };
        tmpl.render_captured_to(
            context! {
                messages => Value::from(messages.iter().map(ChatMessage::to_value).collect::<Vec<_>>()),
                add_generation_prompt => true,
                bos_token => &self.bos,
                eos_token => &self.eos,
            },
            &mut out,
        )
        .map_err(describe)?;
        String::from_utf8(out.buf).map_err(|_| TemplateError("output is not UTF-8".into()))
    }
}

fn describe(e: minijinja::Error) -> TemplateError {
    let why = match e.kind() {
        ErrorKind::OutOfFuel => "it ran too long (loop limit reached)".to_string(),
        ErrorKind::TemplateNotFound => {
            "it tried to load another template or file, which is not allowed".into()
        }
        ErrorKind::WriteFailure => format!("its output exceeded {MAX_OUTPUT} bytes"),
        _ => e.to_string(),
    };
    TemplateError(why)
}

/// A writer that refuses to grow past [`MAX_OUTPUT`].
struct CappedWriter {
    buf: Vec<u8>,
}

impl std::io::Write for CappedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > MAX_OUTPUT {
            return Err(std::io::Error::other("template output too large"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msgs() -> Vec<ChatMessage> {
        vec![ChatMessage {
            role: "user".into(),
            content: "hi".into(),
        }]
    }

    fn with(src: &str) -> ChatTemplate {
        ChatTemplate::new(Some(src.into()), "<s>".into(), "</s>".into())
    }

    #[test]
    fn default_is_chatml() {
        let t = ChatTemplate::new(None, "<s>".into(), "</s>".into());
        assert_eq!(
            t.render(&msgs()).unwrap(),
            "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn endless_loop_runs_out_of_fuel() {
        let e = with(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        )
        .render(&msgs())
        .unwrap_err();
        assert!(e.0.contains("too long") || e.0.contains("exceeded"), "{e}");
    }

    #[test]
    fn include_cannot_read_files() {
        let e = with("{% include '/etc/passwd' %}")
            .render(&msgs())
            .unwrap_err();
        assert!(e.0.contains("not allowed"), "{e}");
    }

    #[test]
    fn unbounded_recursion_is_stopped() {
        let e = with("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}").render(&msgs());
        assert!(e.is_err());
    }

    #[test]
    fn raise_exception_is_an_error() {
        let e = with("{{ raise_exception('no system role') }}")
            .render(&msgs())
            .unwrap_err();
        assert!(e.0.contains("no system role"), "{e}");
    }
}
