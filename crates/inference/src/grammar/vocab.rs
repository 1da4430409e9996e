//! The model's vocabulary as llguidance's token trie, built once per model load: each
//! token's bytes as the model writes them, control tokens marked with llguidance's 0xFF
//! prefix (so a grammar can only reach them by name), every end-of-generation token
//! registered as an end.

use std::sync::Arc;

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::toktrie::{ApproximateTokEnv, TokEnv, TokRxInfo, TokTrie};

/// Build the trie environment for `model` (walks the whole vocabulary once).
pub fn tok_env(model: &LlamaModel) -> TokEnv {
    let vocab = model.vocab();
    let n_vocab = model.n_vocab().max(0) as u32;
    let eot = vocab.eot().0;
    let primary = if eot >= 0 { eot } else { vocab.eos().0 } as u32;
    let info = TokRxInfo::new(n_vocab, primary);
    let mut ends = vec![primary];
    let mut words = Vec::with_capacity(n_vocab as usize);
    for i in 0..n_vocab as i32 {
        let t = LlamaToken(i);
        if vocab.is_eog(t) && i as u32 != primary {
            ends.push(i as u32);
        }
        let bytes = vocab.token_to_piece(t, false, None);
        if bytes.is_empty() {
            let special = vocab.token_to_piece(t, true, None);
            if special.is_empty() {
                words.push(Vec::new());
            } else {
                let mut marked = Vec::with_capacity(special.len() + 1);
                marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                marked.extend(special);
                words.push(marked);
            }
        } else {
            words.push(bytes);
        }
    }
    let trie = TokTrie::from(&info, &words).with_eos_tokens(&ends);
    Arc::new(ApproximateTokEnv::new(trie))
}
