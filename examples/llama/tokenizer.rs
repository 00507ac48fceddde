//! GPT-2 byte-level BPE tokenizer read from a GGUF file's metadata
//! (`tokenizer.ggml.tokens`, `.token_type`, `.merges`, `.pre`), and the chat
//! template.
//!
//! Encoding follows llama.cpp's BPE tokenizer: special tokens (control,
//! user-defined, unknown) are cut out of the text first (longest first); the
//! rest is split by the pre-tokenizer's regexes, applied in sequence (each one
//! splits every piece the previous ones made; the text between matches stays a
//! piece); each piece's bytes are mapped to GPT-2's printable alphabet and
//! merged pair by pair, lowest merge rank first (leftmost on ties).

use blockq::gguf::{GgufFile, MetadataValue, ValueType};
use fancy_regex::Regex;
use std::collections::HashMap;

/// GGUF token types (llama.cpp's `llama_token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

/// The common GPT-2 split pattern (words with an optional leading space,
/// numbers, punctuation runs, whitespace not followed by a non-space).
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";

/// The pre-tokenizer regexes for `tokenizer.ggml.pre`, as llama.cpp defines
/// them per pre-tokenizer type (only the types whose patterns are listed
/// here; others are an error rather than a silently different split).
fn pre_tokenizer(pre: &str) -> Option<Vec<&'static str>> {
    Some(match pre {
        // StarCoder family (SmolLM uses its tokenizer): every digit alone.
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva" => {
            vec![r"\p{N}", GPT2]
        }
        "gpt-2" | "gpt2" | "mpt" | "olmo" | "jais" | "trillion" | "granite-docling" => vec![GPT2],
        "llama3" | "llama-bpe" | "llama-v3" | "falcon3" | "pixtral" | "dbrx" | "smaug-bpe" => {
            vec![concat!(
                r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
                r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*",
                r"|\s*[\r\n]+|\s+(?!\S)|\s+"
            )]
        }
        "qwen2" | "qwen2.5" | "deepseek-r1-qwen" => vec![concat!(
            r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])",
            r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*",
            r"|\s*[\r\n]+|\s+(?!\S)|\s+"
        )],
        "default" => vec![r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
        _ => return None,
    })
}

/// GPT-2's map from bytes to printable characters: printable Latin-1 bytes
/// stand for themselves, the others for U+0100 onwards, in byte order.
fn byte_chars() -> [char; 256] {
    let printable = |b: u32| (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || b >= 0xAE;
    let mut map = ['\0'; 256];
    let mut next = 0x100u32;
    for (b, c) in map.iter_mut().enumerate() {
        let b = b as u32;
        *c = if printable(b) {
            char::from_u32(b).unwrap()
        } else {
            next += 1;
            char::from_u32(next - 1).unwrap()
        };
    }
    map
}

/// Reads the items of a metadata array of `item` type from the file bytes.
/// Strings are `u64` length + bytes; fixed-size items are little-endian.
fn array<'a>(file: &'a GgufFile, key: &str, item: ValueType) -> Result<(usize, &'a [u8]), String> {
    match file.get(key) {
        Some(MetadataValue::Array {
            item_type,
            len,
            offset,
        }) if *item_type == item => Ok((*len as usize, &file.bytes()[*offset as usize..])),
        Some(other) => Err(format!(
            "{key}: expected an array of {item:?}, found {other:?}"
        )),
        None => Err(format!("metadata key {key} missing")),
    }
}

fn string_array(file: &GgufFile, key: &str) -> Result<Vec<String>, String> {
    let (len, mut b) = array(file, key, ValueType::String)?;
    let mut out = Vec::with_capacity(len);
    for _ in 0..len {
        // The parser validated the array's extent when it opened the file.
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        out.push(String::from_utf8_lossy(&b[8..8 + n]).into_owned());
        b = &b[8 + n..];
    }
    Ok(out)
}

fn i32_array(file: &GgufFile, key: &str) -> Result<Vec<i32>, String> {
    let (len, b) = array(file, key, ValueType::I32)?;
    Ok(b[..4 * len]
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
        .collect())
}

/// An unsigned integer metadata value of any width.
pub fn meta_u64(file: &GgufFile, key: &str) -> Option<u64> {
    match file.get(key)? {
        MetadataValue::U8(v) => Some(*v as u64),
        MetadataValue::U16(v) => Some(*v as u64),
        MetadataValue::U32(v) => Some(*v as u64),
        MetadataValue::U64(v) => Some(*v),
        MetadataValue::I8(v) => u64::try_from(*v).ok(),
        MetadataValue::I16(v) => u64::try_from(*v).ok(),
        MetadataValue::I32(v) => u64::try_from(*v).ok(),
        MetadataValue::I64(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// A string metadata value.
pub fn meta_str<'a>(file: &'a GgufFile, key: &str) -> Option<&'a str> {
    match file.get(key)? {
        MetadataValue::String(s) => Some(s),
        _ => None,
    }
}

/// How a conversation becomes the model's prompt.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatTemplate {
    /// `<|im_start|>role\ncontent<|im_end|>\n`, with the template's default
    /// system message (if it has one) when none is given.
    ChatMl { default_system: Option<String> },
    /// Llama 3: `<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>`.
    Llama3,
}

/// The tokenizer of one GGUF file.
pub struct Tokenizer {
    /// Token strings as stored (GPT-2 alphabet for normal tokens).
    pieces: Vec<String>,
    types: Vec<i32>,
    ids: HashMap<String, u32>,
    ranks: HashMap<(String, String), usize>,
    /// Special tokens, longest first: matched in the text before splitting.
    special: Vec<(String, u32)>,
    pre: Vec<Regex>,
    byte_char: [char; 256],
    char_byte: HashMap<char, u8>,
    /// Prepend BOS (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos: Option<u32>,
    /// Tokens that end generation: EOS, EOT and the template's end-of-turn.
    pub stop: Vec<u32>,
    /// The chat format the file's `tokenizer.chat_template` describes.
    pub template: Option<ChatTemplate>,
}

impl Tokenizer {
    /// Reads the vocabulary, merges and pre-tokenizer from `file`'s metadata.
    pub fn from_gguf(file: &GgufFile) -> Result<Self, String> {
        let model = meta_str(file, "tokenizer.ggml.model").unwrap_or("?");
        if model != "gpt2" {
            return Err(format!(
                "tokenizer.ggml.model = {model}: only GPT-2 byte-level BPE (gpt2) is implemented"
            ));
        }
        let pre_name = meta_str(file, "tokenizer.ggml.pre").unwrap_or("default");
        let pre = pre_tokenizer(pre_name)
            .ok_or_else(|| format!("tokenizer.ggml.pre = {pre_name}: unknown pre-tokenizer"))?
            .into_iter()
            .map(|p| Regex::new(p).map_err(|e| format!("pre-tokenizer regex {p}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        let pieces = string_array(file, "tokenizer.ggml.tokens")?;
        let types =
            i32_array(file, "tokenizer.ggml.token_type").unwrap_or_else(|_| vec![1; pieces.len()]);
        if types.len() != pieces.len() {
            return Err("tokenizer.ggml.token_type and .tokens differ in length".into());
        }
        let merges = string_array(file, "tokenizer.ggml.merges")?;
        let ranks = merges
            .into_iter()
            .enumerate()
            .filter_map(|(rank, m)| {
                // Split at the first space after the first character (a
                // merge's left part may itself start with the space symbol).
                let first = m.chars().next()?.len_utf8();
                let at = first + m[first..].find(' ')?;
                Some(((m[..at].to_string(), m[at + 1..].to_string()), rank))
            })
            .collect();
        let ids: HashMap<String, u32> = pieces
            .iter()
            .enumerate()
            .map(|(i, p)| (p.clone(), i as u32))
            .collect();
        let mut special: Vec<(String, u32)> = pieces
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (p, &t))| {
                !p.is_empty() && matches!(t, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED)
            })
            .map(|(i, (p, _))| (p.clone(), i as u32))
            .collect();
        special.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let byte_char = byte_chars();
        let char_byte = byte_char
            .iter()
            .enumerate()
            .map(|(b, &c)| (c, b as u8))
            .collect();
        let id_of = |key: &str| meta_u64(file, key).map(|v| v as u32);
        let template = meta_str(file, "tokenizer.chat_template").and_then(parse_template);
        let mut stop: Vec<u32> = ["tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"]
            .iter()
            .filter_map(|k| id_of(k))
            .collect();
        let end_of_turn = match template {
            Some(ChatTemplate::ChatMl { .. }) => Some("<|im_end|>"),
            Some(ChatTemplate::Llama3) => Some("<|eot_id|>"),
            None => None,
        };
        stop.extend(end_of_turn.and_then(|t| ids.get(t).copied()));
        Ok(Tokenizer {
            pieces,
            types,
            ids,
            ranks,
            special,
            pre,
            byte_char,
            char_byte,
            add_bos: matches!(
                file.get("tokenizer.ggml.add_bos_token"),
                Some(MetadataValue::Bool(true))
            ),
            bos: id_of("tokenizer.ggml.bos_token_id"),
            stop,
            template,
        })
    }

    /// Vocabulary size.
    pub fn len(&self) -> usize {
        self.pieces.len()
    }

    /// Token ids of `text`: special tokens written in the text are those
    /// tokens; BOS first if the file asks for it.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        if self.add_bos {
            out.extend(self.bos);
        }
        let mut rest = text;
        loop {
            // The earliest special token in `rest` (the longest at one position).
            let hit = self
                .special
                .iter()
                .filter_map(|(s, id)| rest.find(s.as_str()).map(|at| (at, s.len(), *id)))
                .min_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
            match hit {
                Some((at, len, id)) => {
                    self.encode_plain(&rest[..at], &mut out);
                    out.push(id);
                    rest = &rest[at + len..];
                }
                None => {
                    self.encode_plain(rest, &mut out);
                    break;
                }
            }
        }
        out
    }

    /// Pre-tokenizes `text` (no special tokens in it) and BPE-encodes each piece.
    fn encode_plain(&self, text: &str, out: &mut Vec<u32>) {
        if text.is_empty() {
            return;
        }
        let mut pieces = vec![text];
        for re in &self.pre {
            let mut next = Vec::with_capacity(pieces.len());
            for piece in pieces {
                let mut at = 0;
                for m in re.find_iter(piece).filter_map(Result::ok) {
                    if m.start() > at {
                        next.push(&piece[at..m.start()]);
                    }
                    if m.end() > m.start() {
                        next.push(m.as_str());
                    }
                    at = m.end();
                }
                if at < piece.len() {
                    next.push(&piece[at..]);
                }
            }
            pieces = next;
        }
        for piece in pieces {
            self.bpe(piece, out);
        }
    }

    /// Byte-level BPE of one pre-tokenized piece.
    fn bpe(&self, piece: &str, out: &mut Vec<u32>) {
        let mut syms: Vec<String> = piece
            .bytes()
            .map(|b| self.byte_char[b as usize].to_string())
            .collect();
        // Merge the adjacent pair of lowest rank (leftmost on ties) until none has one.
        loop {
            let best = syms
                .windows(2)
                .enumerate()
                .filter_map(|(i, w)| {
                    self.ranks
                        .get(&(w[0].clone(), w[1].clone()))
                        .map(|&r| (r, i))
                })
                .min();
            let Some((_, i)) = best else { break };
            let right = syms.remove(i + 1);
            syms[i].push_str(&right);
        }
        for s in syms {
            match self.ids.get(&s) {
                Some(&id) => out.push(id),
                // Not in the vocabulary: its characters one by one, where known.
                None => out.extend(s.chars().filter_map(|c| self.ids.get(&c.to_string()))),
            }
        }
    }

    /// The bytes token `id` stands for in generated text: nothing for
    /// control tokens, the text of user-defined ones, decoded bytes otherwise.
    pub fn token_bytes(&self, id: u32) -> Vec<u8> {
        let Some(p) = self.pieces.get(id as usize) else {
            return Vec::new();
        };
        match self.types[id as usize] {
            TYPE_CONTROL | TYPE_UNKNOWN => Vec::new(),
            TYPE_USER_DEFINED => p.as_bytes().to_vec(),
            _ => p
                .chars()
                .flat_map(|c| match self.char_byte.get(&c) {
                    Some(&b) => vec![b],
                    None => c.to_string().into_bytes(),
                })
                .collect(),
        }
    }

    /// The prompt for one user message (and an optional system message) in
    /// the file's chat format, ready for the assistant's answer.
    pub fn chat_prompt(&self, user: &str, system: Option<&str>) -> Result<String, String> {
        match &self.template {
            Some(ChatTemplate::ChatMl { default_system }) => {
                let mut s = String::new();
                if let Some(sys) = system.or(default_system.as_deref()) {
                    s += &format!("<|im_start|>system\n{sys}<|im_end|>\n");
                }
                s += &format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n");
                Ok(s)
            }
            Some(ChatTemplate::Llama3) => {
                let turn = |role: &str, c: &str| {
                    format!("<|start_header_id|>{role}<|end_header_id|>\n\n{c}<|eot_id|>")
                };
                let mut s = String::new();
                if let Some(sys) = system {
                    s += &turn("system", sys);
                }
                s += &turn("user", user);
                s += "<|start_header_id|>assistant<|end_header_id|>\n\n";
                Ok(s)
            }
            None => Err(
                "the file has no chat template this program knows (ChatML or \
                         Llama 3): use --raw"
                    .into(),
            ),
        }
    }
}

/// Recognizes the chat format of a Jinja chat template by its markers. For
/// ChatML, a literal default system message
/// (`'<|im_start|>system\n...<|im_end|>`) is taken from the template.
fn parse_template(t: &str) -> Option<ChatTemplate> {
    if t.contains("<|im_start|>") {
        let marker = "<|im_start|>system\n";
        let default_system = t.find(marker).and_then(|at| {
            let rest = &t[at + marker.len()..];
            let end = rest.find("<|im_end|>")?;
            // Only a literal message, not a template expression.
            let msg = &rest[..end];
            (!msg.contains("{{") && !msg.contains('\'')).then(|| msg.to_string())
        });
        Some(ChatTemplate::ChatMl { default_system })
    } else if t.contains("<|start_header_id|>") {
        Some(ChatTemplate::Llama3)
    } else {
        None
    }
}
