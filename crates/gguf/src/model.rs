//! Generated llama-architecture models with random (or designed) F16 weights, written
//! through the one GGUF writer ([`crate::write::GgufBuilder`]).
//!
//! Shared by `cargo xtask gen-model` and the inference tests, so neither links llama.cpp
//! to make a model. Everything is deterministic from the seed: the same preset and seed
//! give the same bytes.

use std::io::{self, Write};

use crate::parse::DEFAULT_ALIGNMENT as ALIGNMENT;
use crate::types::ValueType;
use crate::write::{GgufBuilder, MetaValue};

/// The shape and tokenizer of a generated model.
#[derive(Debug, Clone)]
pub struct ModelSpec {
    /// Name written to `general.name`.
    pub name: String,
    /// Training context length advertised to llama.cpp.
    pub context_length: u32,
    /// Hidden size.
    pub embedding_length: u32,
    /// Number of transformer blocks.
    pub block_count: u32,
    /// Hidden size of the SwiGLU feed-forward network.
    pub feed_forward_length: u32,
    /// Attention heads for queries.
    pub head_count: u32,
    /// Attention heads for keys and values (grouped-query attention when smaller).
    pub head_count_kv: u32,
    /// The Jinja chat template stored as `tokenizer.chat_template`; `None` writes none.
    pub chat_template: Option<String>,
    /// Seed of the weight generator.
    pub seed: u64,
    /// Whether the weights follow the designed greedy path (see [`PATH`]) instead of being
    /// random: greedy decoding then writes fixed text and stops by itself.
    pub greedy_path: bool,
    /// Pad the vocabulary with generated word pieces up to this many tokens (the mask
    /// benchmark's large vocabulary); `None` keeps the small designed one.
    pub vocab_size: Option<u32>,
    /// How much earlier tokens weigh in a random model (it multiplies the query, key and
    /// attention-output weights). At 1 attention is nearly uniform and the current token's
    /// embedding dominates, so the answer hardly depends on the middle of a long prompt;
    /// larger makes every earlier token count (the prefix-reuse tests need an answer that
    /// a wrong KV cell would change).
    pub attention_gain: f32,
}

/// The ChatML template every generated model carries unless told otherwise.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

impl ModelSpec {
    /// A 1-3 MB model for tests.
    pub fn tiny(seed: u64) -> Self {
        ModelSpec {
            name: "sovereign-tiny".into(),
            context_length: 4096,
            embedding_length: 128,
            block_count: 4,
            feed_forward_length: 384,
            head_count: 4,
            head_count_kv: 2,
            chat_template: Some(CHATML_TEMPLATE.into()),
            seed,
            greedy_path: true,
            vocab_size: None,
            attention_gain: 1.0,
        }
    }

    /// A model of about 250M parameters for the benchmark.
    pub fn bench(seed: u64) -> Self {
        ModelSpec {
            name: "sovereign-bench".into(),
            context_length: 4096,
            embedding_length: 1024,
            block_count: 20,
            feed_forward_length: 3072,
            head_count: 16,
            head_count_kv: 8,
            chat_template: Some(CHATML_TEMPLATE.into()),
            seed,
            // The benchmark times a fixed number of generated tokens, so it must not stop.
            greedy_path: false,
            vocab_size: None,
            attention_gain: 1.0,
        }
    }

    /// A small model with a 128k-token vocabulary (about 17 MB): the mask benchmark
    /// measures constrained decoding's per-token work at the size of current tokenizers.
    pub fn vocab128k(seed: u64) -> Self {
        ModelSpec {
            name: "sovereign-vocab128k".into(),
            context_length: 4096,
            embedding_length: 32,
            block_count: 1,
            feed_forward_length: 64,
            head_count: 2,
            head_count_kv: 1,
            chat_template: Some(CHATML_TEMPLATE.into()),
            seed,
            greedy_path: false,
            vocab_size: Some(128 * 1024),
            attention_gain: 1.0,
        }
    }

    /// A preset by name (`tiny` or `bench`).
    pub fn preset(name: &str, seed: u64) -> Option<Self> {
        match name {
            "tiny" => Some(Self::tiny(seed)),
            "bench" => Some(Self::bench(seed)),
            "vocab128k" => Some(Self::vocab128k(seed)),
            _ => None,
        }
    }

    fn head_dim(&self) -> u32 {
        self.embedding_length / self.head_count
    }

    /// The dimensions (innermost first, as GGUF stores them: inputs, then outputs) of the
    /// weight matrix `blk.N.<name>.weight` every block has, for a name in
    /// [`BLOCK_MATRICES`]. The one definition of these shapes: the model writer and the
    /// LoRA generator ([`crate::lora`]) both take them from here.
    pub fn block_matrix_dims(&self, name: &str) -> Option<[u64; 2]> {
        let e = u64::from(self.embedding_length);
        let ff = u64::from(self.feed_forward_length);
        let kv = u64::from(self.head_dim() * self.head_count_kv);
        Some(match name {
            "attn_q" | "attn_output" => [e, e],
            "attn_k" | "attn_v" => [e, kv],
            "ffn_gate" | "ffn_up" => [e, ff],
            "ffn_down" => [ff, e],
            _ => return None,
        })
    }
}

/// The weight matrices of a block, by their name in `blk.N.<name>.weight`.
pub const BLOCK_MATRICES: &[&str] = &[
    "attn_q",
    "attn_k",
    "attn_v",
    "attn_output",
    "ffn_gate",
    "ffn_up",
    "ffn_down",
];

/// Token types as llama.cpp numbers them.
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_BYTE: i32 = 6;

/// Fixed token ids of the generated vocabulary.
pub const UNK: u32 = 0;
pub const BOS: u32 = 1;
pub const EOS: u32 = 2;
pub const FIRST_BYTE: u32 = 3;
pub const IM_START: u32 = FIRST_BYTE + 256;
pub const IM_END: u32 = IM_START + 1;

/// Words whose prefixes become merged pieces (SentencePiece merges only into pieces that
/// exist, so every prefix of a word is in the vocabulary too).
const WORDS: &[&str] = &[
    "the",
    "and",
    "of",
    "to",
    "in",
    "is",
    "it",
    "that",
    "for",
    "on",
    "with",
    "as",
    "was",
    "model",
    "hello",
    "world",
    "server",
    "token",
    "stream",
    "local",
    "machine",
    "sovereign",
    "reply",
    "text",
    "data",
    "time",
    "light",
    "stone",
    "river",
    "green",
    "quiet",
];

/// One vocabulary entry.
struct Token {
    text: String,
    score: f32,
    kind: i32,
}

fn vocabulary() -> Vec<Token> {
    let mut v = vec![
        Token {
            text: "<unk>".into(),
            score: 0.0,
            kind: TYPE_UNKNOWN,
        },
        Token {
            text: "<s>".into(),
            score: 0.0,
            kind: TYPE_CONTROL,
        },
        Token {
            text: "</s>".into(),
            score: 0.0,
            kind: TYPE_CONTROL,
        },
    ];
    for b in 0..=255u32 {
        v.push(Token {
            text: format!("<0x{b:02X}>"),
            score: 0.0,
            kind: TYPE_BYTE,
        });
    }
    v.push(Token {
        text: "<|im_start|>".into(),
        score: 0.0,
        kind: TYPE_CONTROL,
    });
    v.push(Token {
        text: "<|im_end|>".into(),
        score: 0.0,
        kind: TYPE_CONTROL,
    });
    let mut pieces: Vec<String> = Vec::new();
    // Single printable characters as pieces, so text mostly avoids the byte fallback.
    for c in (b' '..=b'~').map(char::from) {
        let piece = if c == ' ' {
            "\u{2581}".to_string()
        } else {
            c.to_string()
        };
        pieces.push(piece);
    }
    for w in WORDS {
        let spaced = format!("\u{2581}{w}");
        for word in [w.to_string(), spaced] {
            let chars: Vec<char> = word.chars().collect();
            for end in 2..=chars.len() {
                pieces.push(chars[..end].iter().collect());
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    for p in pieces {
        if seen.insert(p.clone()) {
            // Longer pieces score higher so the tokenizer prefers them.
            let score = -100.0 + p.chars().count() as f32;
            v.push(Token {
                text: p,
                score,
                kind: TYPE_NORMAL,
            });
        }
    }
    v
}

/// The spec's vocabulary: the designed one, padded with generated pieces when the spec
/// asks for a larger size. The padding is word-like (lower-case letters, some with the
/// SentencePiece space mark or a capital, some digits and punctuation runs), as large
/// tokenizers' vocabularies are, and the same for the same seed.
fn vocabulary_for(spec: &ModelSpec) -> Vec<Token> {
    let mut v = vocabulary();
    let Some(target) = spec.vocab_size else {
        return v;
    };
    let mut seen: std::collections::HashSet<String> = v.iter().map(|t| t.text.clone()).collect();
    let mut rng = SplitMix64::new(spec.seed ^ 0x7f4a_0c0b_ab01_0001);
    const LETTERS: &[u8] = b"etaoinshrdlcumwfgypbvkjxqz";
    const PUNCT: &[u8] = b".,;:!?-_()[]{}<>=+*/\\\"'#@$%&|~^`";
    while v.len() < target as usize {
        let r = rng.next_u64();
        let kind = r % 16;
        let len = 2 + ((r >> 8) % 9) as usize;
        let mut piece = String::new();
        match kind {
            0 => (0..len.min(4))
                .for_each(|i| piece.push(char::from(b'0' + ((r >> (16 + 4 * i)) % 10) as u8))),
            1 => (0..len.min(3)).for_each(|i| {
                piece.push(char::from(
                    PUNCT[((r >> (16 + 6 * i)) % PUNCT.len() as u64) as usize],
                ))
            }),
            _ => {
                if kind < 10 {
                    piece.push('\u{2581}');
                }
                for i in 0..len {
                    // Skewed towards frequent letters, as real text is.
                    let x = rng.next_u64();
                    let idx = ((x % 26) * (x >> 32 & 0xff) / 255) as usize;
                    let c = char::from(LETTERS[idx.min(25)]);
                    piece.push(if i == 0 && kind == 15 {
                        c.to_ascii_uppercase()
                    } else {
                        c
                    });
                }
            }
        }
        if seen.insert(piece.clone()) {
            let score = -100.0 + piece.chars().count() as f32;
            v.push(Token {
                text: piece,
                score,
                kind: TYPE_NORMAL,
            });
        }
    }
    v
}

/// Whether greedy decoding may pick this token: printable text and the end tokens.
fn may_emit(t: &Token, id: u32) -> bool {
    match t.kind {
        TYPE_NORMAL => true,
        TYPE_BYTE => false,
        _ => id == EOS || id == IM_END,
    }
}

/// splitmix64: a tiny, well-mixed, seedable generator.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn next_signed(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

/// IEEE half from single precision, round to nearest even (values here are small and finite).
pub fn f16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    let e = exp - 127 + 15;
    if exp == 0xff {
        return sign | 0x7c00 | if mant != 0 { 0x200 } else { 0 };
    }
    if e >= 0x1f {
        return sign | 0x7c00;
    }
    if e <= 0 {
        if e < -10 {
            return sign;
        }
        let m = mant | 0x80_0000;
        let shift = (14 - e) as u32;
        let half = m >> shift;
        let rem = m & ((1 << shift) - 1);
        let halfway = 1 << (shift - 1);
        let round = rem > halfway || (rem == halfway && half & 1 == 1);
        return sign | (half + round as u32) as u16;
    }
    let half = ((e as u32) << 10) | (mant >> 13);
    let rem = mant & 0x1fff;
    let round = rem > 0x1000 || (rem == 0x1000 && half & 1 == 1);
    sign | (half + round as u32) as u16
}

/// Element types written by this generator.
#[derive(Clone, Copy)]
enum DType {
    F32,
    F16,
}

/// How a tensor's values are made.
enum Fill {
    /// All ones (RMS norm weights).
    Ones,
    /// Uniform random in [-scale, scale].
    Random(f32),
    /// Rows of the output projection: random for tokens greedy decoding may emit, zero
    /// otherwise, so generated text stays printable.
    Output(f32),
    /// All zeros (block outputs of a greedy-path model, making the blocks transparent).
    Zero,
    /// Precomputed values in file order.
    Table(Vec<f32>),
}

struct TensorPlan {
    name: String,
    /// Dimensions innermost first, as GGUF stores them.
    dims: Vec<u64>,
    dtype: DType,
    fill: Fill,
}

impl TensorPlan {
    fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

fn tensors(spec: &ModelSpec, n_vocab: u64) -> Vec<TensorPlan> {
    let e = spec.embedding_length as u64;
    let ff = spec.feed_forward_length as u64;
    let matrix = |name: &str| {
        spec.block_matrix_dims(name)
            .map_or_else(Vec::new, Vec::from)
    };
    let scale = |n_in: u64| 1.0 / (n_in as f32).sqrt();
    let (embd_fill, output_fill) = if spec.greedy_path {
        let d = design(spec, &vocabulary_for(spec));
        (Fill::Table(d.embedding), Fill::Table(d.output))
    } else {
        (Fill::Random(1.0), Fill::Output(scale(e) * 4.0))
    };
    // Zero block outputs leave the residual stream equal to the current token's embedding.
    let block_out = |n_in: u64, gain: f32| {
        if spec.greedy_path {
            Fill::Zero
        } else {
            Fill::Random(scale(n_in) * gain)
        }
    };
    let gain = spec.attention_gain;
    let mut t = vec![
        TensorPlan {
            name: "token_embd.weight".into(),
            dims: vec![e, n_vocab],
            dtype: DType::F16,
            fill: embd_fill,
        },
        TensorPlan {
            name: "output_norm.weight".into(),
            dims: vec![e],
            dtype: DType::F32,
            fill: Fill::Ones,
        },
        TensorPlan {
            name: "output.weight".into(),
            dims: vec![e, n_vocab],
            dtype: DType::F16,
            fill: output_fill,
        },
    ];
    for b in 0..spec.block_count {
        let mut add = |suffix: &str, dims: Vec<u64>, dtype: DType, fill: Fill| {
            t.push(TensorPlan {
                name: format!("blk.{b}.{suffix}.weight"),
                dims,
                dtype,
                fill,
            })
        };
        add("attn_norm", vec![e], DType::F32, Fill::Ones);
        add(
            "attn_q",
            matrix("attn_q"),
            DType::F16,
            Fill::Random(scale(e) * gain),
        );
        add(
            "attn_k",
            matrix("attn_k"),
            DType::F16,
            Fill::Random(scale(e) * gain),
        );
        add(
            "attn_v",
            matrix("attn_v"),
            DType::F16,
            Fill::Random(scale(e)),
        );
        add(
            "attn_output",
            matrix("attn_output"),
            DType::F16,
            block_out(e, gain),
        );
        add("ffn_norm", vec![e], DType::F32, Fill::Ones);
        add(
            "ffn_gate",
            matrix("ffn_gate"),
            DType::F16,
            Fill::Random(scale(e)),
        );
        add(
            "ffn_up",
            matrix("ffn_up"),
            DType::F16,
            Fill::Random(scale(e)),
        );
        add(
            "ffn_down",
            matrix("ffn_down"),
            DType::F16,
            block_out(ff, 1.0),
        );
    }
    t
}

/// The text greedy decoding writes, one vocabulary piece each (all distinct, so each has one
/// successor); the piece after the last is `<|im_end|>`, an end-of-generation token.
pub const PATH: &[&str] = &[
    "hello",
    ",",
    "\u{2581}world",
    "!",
    "\u{2581}the",
    "\u{2581}sovereign",
    "\u{2581}server",
    "\u{2581}is",
    "\u{2581}local",
    ":",
    "\u{2581}a",
    "\u{2581}quiet",
    "\u{2581}machine",
    "\u{2581}with",
    "\u{2581}green",
    "\u{2581}light",
    "\u{2581}on",
    "\u{2581}stone",
    "\u{2581}and",
    "\u{2581}river",
    "\u{2581}data",
    "\u{2581}in",
    "\u{2581}time",
    ";",
    "\u{2581}reply",
    "\u{2581}text",
    "\u{2581}stream",
    "\u{2581}token",
    "\u{2581}model",
    ".",
];

/// The text greedy decoding writes after a chat prompt (or any prompt ending off the path).
pub const PATH_TEXT: &str = "hello, world! the sovereign server is local: a quiet machine with green light on stone and river data in time; reply text stream token model.";

/// A cycle of pieces greedy decoding never leaves once in it: a completion prompt ending with
/// [`LOOP_TRIGGER`] generates `^|~^|~...` until `max_tokens`, for tests that need a busy slot.
const LOOP: &[&str] = &["~", "^", "|"];

/// The prompt ending that makes greedy decoding loop forever (see [`LOOP`]).
pub const LOOP_TRIGGER: &str = "~";

/// Embedding and output matrices of a greedy-path model, row-major by token.
struct Design {
    embedding: Vec<f32>,
    output: Vec<f32>,
}

/// With transparent blocks the final hidden state is the RMS-normed embedding of the current
/// token, so the next token is the output row with the largest dot product with it. Tokens
/// on the path or loop ("leaders") get random embeddings in the first three quarters of the
/// coordinates; every other token gets one shared direction `c` in the last quarter. The
/// output row of a leader's successor is the leader's unit embedding, the row of the first
/// path piece is `c`'s unit vector, every other row is zero: the designed successor scores
/// `sqrt(e)` while any other scores the cosine of two random vectors times that.
fn design(spec: &ModelSpec, vocab: &[Token]) -> Design {
    let e = spec.embedding_length as usize;
    let split = e - e / 4;
    let id = |text: &str| -> usize {
        vocab
            .iter()
            .position(|t| t.text == text)
            .unwrap_or_else(|| panic!("piece {text:?} is not in the vocabulary"))
    };
    let path: Vec<usize> = PATH.iter().map(|p| id(p)).collect();
    let cycle: Vec<usize> = LOOP.iter().map(|p| id(p)).collect();
    let mut successor: Vec<(usize, usize)> = path
        .windows(2)
        .map(|w| (w[0], w[1]))
        .chain(std::iter::once((path[path.len() - 1], IM_END as usize)))
        .collect();
    successor.extend((0..cycle.len()).map(|i| (cycle[i], cycle[(i + 1) % cycle.len()])));

    let mut rng = SplitMix64::new(spec.seed ^ 0x9a7e_d5ee_d000_0001);
    let n = vocab.len();
    let mut embedding = vec![0f32; n * e];
    let c: Vec<f32> = (split..e)
        .map(|_| {
            let v = rng.next_signed();
            0.5 * v.signum() + 0.5 * v
        })
        .collect();
    let leaders: std::collections::HashSet<usize> = successor.iter().map(|(l, _)| *l).collect();
    for t in 0..n {
        let row = &mut embedding[t * e..(t + 1) * e];
        if leaders.contains(&t) {
            row[..split].iter_mut().for_each(|x| *x = rng.next_signed());
        } else {
            // A little noise keeps the rows distinct without moving the argmax.
            row.iter_mut().for_each(|x| *x = 0.02 * rng.next_signed());
            row[split..].iter_mut().zip(&c).for_each(|(x, c)| *x += c);
        }
    }
    let unit = |v: &[f32]| -> Vec<f32> {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / norm).collect()
    };
    let mut output = vec![0f32; n * e];
    for (leader, next) in &successor {
        let u = unit(&embedding[leader * e..leader * e + split]);
        output[next * e..next * e + split].copy_from_slice(&u);
    }
    output[path[0] * e + split..(path[0] + 1) * e].copy_from_slice(&unit(&c));
    // Second choices, for constrained decoding where a grammar masks the designed successor
    // out: a closing quote after the last path piece and a closing brace after any other
    // piece score 0.3 of the designed successor, so greedy JSON strings and objects end.
    let (quote, brace) = (id("\""), id("}"));
    let last = unit(&embedding[path[path.len() - 1] * e..path[path.len() - 1] * e + split]);
    for (o, u) in output[quote * e..quote * e + split].iter_mut().zip(&last) {
        *o = 0.3 * u;
    }
    for (o, u) in output[brace * e + split..(brace + 1) * e]
        .iter_mut()
        .zip(&unit(&c))
    {
        *o = 0.3 * u;
    }
    Design { embedding, output }
}

/// Number of parameters the spec produces.
pub fn parameter_count(spec: &ModelSpec) -> u64 {
    let n_vocab = vocabulary_for(spec).len() as u64;
    tensors(spec, n_vocab)
        .iter()
        .map(TensorPlan::elements)
        .sum()
}

/// Write the model as GGUF v3 to `out`.
pub fn write_model<W: Write>(spec: &ModelSpec, out: W) -> io::Result<()> {
    let vocab = vocabulary_for(spec);
    let n_vocab = vocab.len() as u64;
    let plans = tensors(spec, n_vocab);
    let array = |ty: ValueType, items: Vec<MetaValue>| MetaValue::Array(ty, items);
    let mut file = GgufBuilder::new()
        .kv("general.architecture", MetaValue::str("llama"))
        .kv("general.name", MetaValue::Str(spec.name.clone()))
        .kv("general.alignment", MetaValue::U32(ALIGNMENT as u32))
        // 1 = MOSTLY_F16
        .kv("general.file_type", MetaValue::U32(1))
        .kv("llama.context_length", MetaValue::U32(spec.context_length))
        .kv(
            "llama.embedding_length",
            MetaValue::U32(spec.embedding_length),
        )
        .kv("llama.block_count", MetaValue::U32(spec.block_count))
        .kv(
            "llama.feed_forward_length",
            MetaValue::U32(spec.feed_forward_length),
        )
        .kv(
            "llama.attention.head_count",
            MetaValue::U32(spec.head_count),
        )
        .kv(
            "llama.attention.head_count_kv",
            MetaValue::U32(spec.head_count_kv),
        )
        .kv(
            "llama.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-5),
        )
        .kv(
            "llama.rope.dimension_count",
            MetaValue::U32(spec.head_dim()),
        )
        .kv("llama.rope.freq_base", MetaValue::F32(10000.0))
        .kv("llama.vocab_size", MetaValue::U32(n_vocab as u32))
        .kv("tokenizer.ggml.model", MetaValue::str("llama"))
        .kv(
            "tokenizer.ggml.tokens",
            array(
                ValueType::String,
                vocab
                    .iter()
                    .map(|t| MetaValue::Str(t.text.clone()))
                    .collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.scores",
            array(
                ValueType::F32,
                vocab.iter().map(|t| MetaValue::F32(t.score)).collect(),
            ),
        )
        .kv(
            "tokenizer.ggml.token_type",
            array(
                ValueType::I32,
                vocab.iter().map(|t| MetaValue::I32(t.kind)).collect(),
            ),
        )
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(BOS))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(EOS))
        .kv("tokenizer.ggml.unknown_token_id", MetaValue::U32(UNK))
        .kv("tokenizer.ggml.add_bos_token", MetaValue::Bool(true))
        .kv("tokenizer.ggml.add_eos_token", MetaValue::Bool(false))
        .kv("tokenizer.ggml.add_space_prefix", MetaValue::Bool(false));
    if let Some(t) = &spec.chat_template {
        file = file.kv("tokenizer.chat_template", MetaValue::Str(t.clone()));
    }
    for p in &plans {
        let type_id = match p.dtype {
            DType::F32 => 0,
            DType::F16 => 1,
        };
        file = file.tensor_id(&p.name, &p.dims, type_id);
    }

    let mut out = io::BufWriter::new(out);
    let mut rng = SplitMix64::new(spec.seed);
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    file.write_with(&mut out, |i, w| {
        let Some(p) = plans.get(i) else {
            return Ok(());
        };
        buf.clear();
        let row = p.dims[0] as usize;
        let n = p.elements() as usize;
        for i in 0..n {
            let v = match &p.fill {
                Fill::Ones => 1.0,
                Fill::Zero => 0.0,
                Fill::Table(values) => values[i],
                Fill::Random(s) => rng.next_signed() * s,
                Fill::Output(s) => {
                    let s = *s;
                    let id = (i / row) as u32;
                    let r = rng.next_signed() * s;
                    if may_emit(&vocab[id as usize], id) {
                        r
                    } else {
                        0.0
                    }
                }
            };
            match p.dtype {
                DType::F32 => buf.extend_from_slice(&v.to_le_bytes()),
                DType::F16 => buf.extend_from_slice(&f16_bits(v).to_le_bytes()),
            }
            if buf.len() >= 1 << 20 {
                w.write_all(&buf)?;
                buf.clear();
            }
        }
        w.write_all(&buf)
    })?;
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f16_conversion_matches_known_values() {
        assert_eq!(f16_bits(1.0), 0x3c00);
        assert_eq!(f16_bits(-2.0), 0xc000);
        assert_eq!(f16_bits(0.5), 0x3800);
        assert_eq!(f16_bits(0.0), 0);
        assert_eq!(f16_bits(65504.0), 0x7bff);
        assert_eq!(f16_bits(1e-8), 0);
    }

    #[test]
    fn same_seed_same_bytes_and_tiny_is_small() {
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_model(&ModelSpec::tiny(7), &mut a).unwrap();
        write_model(&ModelSpec::tiny(7), &mut b).unwrap();
        assert_eq!(a, b);
        assert!(
            a.len() > 1_000_000 && a.len() < 3_000_000,
            "tiny is {} bytes",
            a.len()
        );
        let mut c = Vec::new();
        write_model(&ModelSpec::tiny(8), &mut c).unwrap();
        assert_ne!(a, c);
    }

    /// Greedy decoding over the design in plain arithmetic (the blocks are transparent):
    /// from any off-path token the argmax walks the whole path and ends on `<|im_end|>`.
    #[test]
    fn designed_greedy_path_ends_with_im_end() {
        let spec = ModelSpec::tiny(42);
        let vocab = vocabulary();
        let d = design(&spec, &vocab);
        let e = spec.embedding_length as usize;
        let next = |t: usize| -> usize {
            let x = &d.embedding[t * e..(t + 1) * e];
            (0..vocab.len())
                .max_by(|&a, &b| {
                    let dot = |r: usize| -> f32 {
                        d.output[r * e..(r + 1) * e]
                            .iter()
                            .zip(x)
                            .map(|(w, v)| w * v)
                            .sum()
                    };
                    dot(a).total_cmp(&dot(b))
                })
                .unwrap()
        };
        for start in [BOS as usize, IM_START as usize, FIRST_BYTE as usize + 10] {
            let mut t = start;
            let mut text = String::new();
            for _ in 0..PATH.len() {
                t = next(t);
                text.push_str(&vocab[t].text);
            }
            assert_eq!(text.replace('\u{2581}', " "), PATH_TEXT);
            assert_eq!(next(t), IM_END as usize);
        }
        let tilde = vocab.iter().position(|t| t.text == LOOP_TRIGGER).unwrap();
        let mut t = tilde;
        for _ in 0..3 {
            t = next(t);
        }
        assert_eq!(t, tilde, "the loop returns to its trigger");
    }

    #[test]
    fn vocab128k_pads_to_distinct_pieces_and_keeps_the_designed_ones() {
        let spec = ModelSpec::vocab128k(1);
        let v = vocabulary_for(&spec);
        assert_eq!(v.len(), 128 * 1024);
        let distinct: std::collections::HashSet<&str> = v.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(distinct.len(), v.len());
        let base = vocabulary();
        assert!(base.iter().zip(&v).all(|(a, b)| a.text == b.text));
        assert_eq!(vocabulary_for(&ModelSpec::tiny(1)).len(), base.len());
    }

    #[test]
    fn bench_is_about_250m_parameters() {
        let n = parameter_count(&ModelSpec::bench(1));
        assert!((230_000_000..270_000_000).contains(&n), "{n}");
    }
}
