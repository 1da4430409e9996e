//! Quantizing a GGUF model with llama.cpp's own quantizer (`llama_model_quantize`, only
//! in the sys crate).

/// The quantization types `sovereign model quantize` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QuantType {
    /// 8-bit, nearly lossless.
    #[value(name = "q8_0")]
    Q8_0,
    /// 4-bit, the classic small format.
    #[value(name = "q4_0")]
    Q4_0,
    /// 4-bit k-quant, medium: better quality per byte than q4_0.
    #[value(name = "q4_k_m")]
    Q4KM,
}

impl QuantType {
    /// The name used on the command line and in llama.cpp's file naming.
    pub fn name(self) -> &'static str {
        match self {
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4KM => "q4_k_m",
        }
    }

    #[cfg(feature = "engine")]
    fn ftype(self) -> llama_cpp_sys_2::llama_ftype {
        match self {
            QuantType::Q8_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q8_0,
            QuantType::Q4_0 => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_0,
            QuantType::Q4KM => llama_cpp_sys_2::LLAMA_FTYPE_MOSTLY_Q4_K_M,
        }
    }
}

#[cfg(feature = "engine")]
/// Quantize `input` into `output` with `threads` threads (0: all cores). Blocks; writes
/// to a temporary name beside `output` and renames it into place on success.
// Writes the output file the operator names on the command line (and its temporary).
#[allow(clippy::disallowed_methods)]
pub fn quantize(
    input: &std::path::Path,
    output: &std::path::Path,
    kind: QuantType,
    threads: usize,
) -> Result<(), String> {
    super::engine::backend()?;
    let tmp = output.with_extension("gguf.partial");
    let cstr = |p: &std::path::Path| {
        p.to_str()
            .and_then(|s| std::ffi::CString::new(s).ok())
            .ok_or_else(|| format!("{} is not a valid path for llama.cpp", p.display()))
    };
    let (inp, out) = (cstr(input)?, cstr(&tmp)?);
    // SAFETY: default params come from llama.cpp; the paths are NUL-terminated and live
    // across the call; llama.cpp does not keep the pointers.
    let rc = unsafe {
        let mut params = llama_cpp_sys_2::llama_model_quantize_default_params();
        params.ftype = kind.ftype();
        params.nthread = i32::try_from(threads).unwrap_or(0);
        llama_cpp_sys_2::llama_model_quantize(inp.as_ptr(), out.as_ptr(), &params)
    };
    if rc != 0 {
        let _cleanup = std::fs::remove_file(&tmp);
        return Err(format!(
            "llama.cpp could not quantize {} (status {rc}); is it a GGUF model?",
            input.display()
        ));
    }
    std::fs::rename(&tmp, output).map_err(|e| {
        format!(
            "cannot rename {} to {}: {e}",
            tmp.display(),
            output.display()
        )
    })
}
