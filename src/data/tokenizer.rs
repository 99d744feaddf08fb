//! Text → token ids and back: a thin wrapper over the Hugging Face `tokenizers` crate.
//!
//! Why a wrapper and not the crate itself: the rest of tunelab needs a handful of calls (ids,
//! byte offsets for QA spans, word ids for NER labels, the special ids of a preset), errors in
//! the crate's own [`Error`] type naming the file, and no panics on a malformed file. Everything
//! else — the BPE and WordPiece models, normalizers, the `tokenizer.json` format — is the
//! Hugging Face implementation, so a file saved here loads in Python and a GPT-2 or BERT
//! `tokenizer.json` loads here.
//!
//! Two presets fix the special tokens and how they are added:
//!
//! | preset | special tokens (ids 0.. when trained here) | added by `add_special_tokens` |
//! |---|---|---|
//! | [`Preset::Gpt`] | `<\|endoftext\|>` (BOS = EOS), `<pad>` | nothing: a decoder LM adds EOS itself where it wants one |
//! | [`Preset::Bert`] | `[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]` | `[CLS] text [SEP]` |
//!
//! A tokenizer trained here is byte-level BPE as in GPT-2: text is read as UTF-8 bytes, each
//! byte is a symbol of the 256-letter base alphabet (so no text is ever unknown), and the
//! pre-tokenizer splits before spaces, so `" world"` is one token `Ġworld`. Decoding gives the
//! exact text back.

use std::collections::HashSet;
use std::ffi::OsString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use tokenizers as hf;
use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::sequence::Sequence as ProcessorSequence;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::AddedToken;

use crate::error::{Error, Result};

/// GPT preset: end of text, also used as beginning of text.
pub const GPT_EOS: &str = "<|endoftext|>";
/// GPT preset: padding (GPT-2 itself has none; batches need one).
pub const GPT_PAD: &str = "<pad>";
/// BERT preset: padding.
pub const BERT_PAD: &str = "[PAD]";
/// BERT preset: unknown word piece (WordPiece only; byte-level BPE never needs it).
pub const BERT_UNK: &str = "[UNK]";
/// BERT preset: start of every input; its final hidden state feeds a classification head.
pub const BERT_CLS: &str = "[CLS]";
/// BERT preset: end of a segment.
pub const BERT_SEP: &str = "[SEP]";
/// BERT preset: the masked-LM blank.
pub const BERT_MASK: &str = "[MASK]";

/// A byte range `start..end` of the encoded text: `&text[start..end]`.
pub type ByteSpan = (usize, usize);

/// Which family of special tokens a tokenizer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Decoder-only LM: `<|endoftext|>` (BOS = EOS) and `<pad>`; nothing added around inputs.
    Gpt,
    /// Encoder: `[PAD] [UNK] [CLS] [SEP] [MASK]`; inputs become `[CLS] text [SEP]`.
    Bert,
}

impl Preset {
    /// The special tokens of this preset, in the order training gives them ids 0, 1, ...
    pub fn special_tokens(self) -> &'static [&'static str] {
        match self {
            Preset::Gpt => &[GPT_EOS, GPT_PAD],
            Preset::Bert => &[BERT_PAD, BERT_UNK, BERT_CLS, BERT_SEP, BERT_MASK],
        }
    }

    /// The preset of a loaded tokenizer: BERT if it knows both `[CLS]` and `[SEP]`, else GPT.
    fn infer(inner: &hf::Tokenizer) -> Preset {
        if inner.token_to_id(BERT_CLS).is_some() && inner.token_to_id(BERT_SEP).is_some() {
            Preset::Bert
        } else {
            Preset::Gpt
        }
    }
}

/// The ids of the preset's special tokens that this vocabulary has.
#[derive(Debug, Clone, Copy, Default)]
struct SpecialIds {
    pad: Option<u32>,
    eos: Option<u32>,
    cls: Option<u32>,
    sep: Option<u32>,
    mask: Option<u32>,
}

/// A tokenizer: a Hugging Face tokenizer plus its preset and special ids.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: hf::Tokenizer,
    preset: Preset,
    special: SpecialIds,
    /// 1 + the largest id: the number of rows an embedding table needs.
    vocab_size: usize,
    /// A hash of the whole tokenizer (its JSON and preset): two tokenizers with the same
    /// fingerprint encode alike, so encodings may be shared between them
    /// ([`crate::data::encode::encode_memo`]). Computed on first use: writing out a large
    /// vocabulary costs more than most loads need.
    fingerprint: std::sync::OnceLock<u64>,
}

impl Tokenizer {
    /// Wraps a Hugging Face tokenizer. Padding and truncation settings are cleared: batching
    /// ([`crate::data::batch`]) pads, and a tokenizer that padded on its own would slip pad ids
    /// into the sequences.
    fn wrap(mut inner: hf::Tokenizer, preset: Preset) -> Tokenizer {
        inner.with_padding(None);
        // Clearing truncation cannot fail (only setting a stride can).
        let _ = inner.with_truncation(None);
        let id = |t: &str| inner.token_to_id(t);
        let special = match preset {
            Preset::Gpt => SpecialIds {
                pad: id(GPT_PAD),
                eos: id(GPT_EOS),
                ..SpecialIds::default()
            },
            Preset::Bert => SpecialIds {
                pad: id(BERT_PAD),
                cls: id(BERT_CLS),
                sep: id(BERT_SEP),
                mask: id(BERT_MASK),
                ..SpecialIds::default()
            },
        };
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        Tokenizer {
            inner,
            preset,
            special,
            vocab_size,
            fingerprint: std::sync::OnceLock::new(),
        }
    }

    /// See the field: equal for tokenizers that encode alike.
    pub fn fingerprint(&self) -> u64 {
        *self.fingerprint.get_or_init(|| {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            // A tokenizer that cannot be written out gets a fingerprint of its own (its address
            // is as good as any: it is never equal to a real hash by more than chance).
            match self.inner.to_string(false) {
                Ok(json) => json.hash(&mut h),
                Err(_) => (&self.inner as *const hf::Tokenizer as usize).hash(&mut h),
            }
            (self.preset == Preset::Bert).hash(&mut h);
            h.finish()
        })
    }

    /// Trains a byte-level BPE tokenizer on `corpus` (one string per document or line) with at
    /// most `vocab_size` tokens, special tokens included.
    ///
    /// The vocabulary is: the preset's special tokens (ids 0..), the 256 byte symbols, then one
    /// token per merge, most frequent pair first, until `vocab_size` or until no pair is left.
    /// Pre-tokenizer, decoder and offsets are GPT-2's: ByteLevel without an added prefix space
    /// (so decoding is exact), offsets trimmed of the leading space a token carries. For
    /// [`Preset::Bert`] the post-processor wraps inputs as `[CLS] text [SEP]` (and pairs as
    /// `[CLS] a [SEP] b [SEP]`) when special tokens are asked for.
    pub fn train_bpe(corpus: &[String], vocab_size: usize, preset: Preset) -> Result<Tokenizer> {
        const OP: &str = "Tokenizer::train_bpe";
        if corpus.is_empty() {
            return Err(invalid(OP, "the corpus is empty"));
        }
        let specials = preset.special_tokens();
        let alphabet: HashSet<char> = ByteLevel::alphabet().into_iter().collect();
        let min = specials.len() + alphabet.len();
        if vocab_size < min {
            return Err(invalid(
                OP,
                format!(
                    "vocab_size {vocab_size} is below {min} ({} special tokens + {} byte symbols)",
                    specials.len(),
                    alphabet.len()
                ),
            ));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(vocab_size)
            .min_frequency(0)
            .show_progress(false)
            .special_tokens(
                specials
                    .iter()
                    .map(|&s| AddedToken::from(s, true))
                    .collect(),
            )
            .initial_alphabet(alphabet)
            .build()
            .into();

        let mut inner = hf::Tokenizer::new(BPE::default());
        // GPT-2: no prefix space (exact round trip), trimmed offsets, the GPT-2 split regex.
        let byte_level = ByteLevel::new(false, true, true);
        inner.with_pre_tokenizer(Some(byte_level));
        inner.with_decoder(Some(byte_level));
        guard(|| inner.train(&mut trainer, corpus.iter()).map(|_| ()))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| invalid(OP, format!("training failed: {e}")))?;

        // The ByteLevel post-processor adds no tokens; it trims offsets, so `Ġworld` in
        // "hello world" spans "world", not " world".
        let trim = PostProcessorWrapper::ByteLevel(byte_level);
        let post = match preset {
            Preset::Gpt => trim,
            Preset::Bert => {
                let template = bert_template(&inner, OP)?;
                PostProcessorWrapper::Sequence(ProcessorSequence::new(vec![
                    trim,
                    PostProcessorWrapper::Template(template),
                ]))
            }
        };
        inner.with_post_processor(Some(post));
        Ok(Tokenizer::wrap(inner, preset))
    }

    /// Loads a Hugging Face `tokenizer.json` (GPT-2's, BERT's, or one saved by [`Tokenizer::save`]).
    /// The preset is [`Preset::Bert`] if the vocabulary has `[CLS]` and `[SEP]`, else
    /// [`Preset::Gpt`]. Padding and truncation settings in the file are ignored.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| Error::Io {
            path: shown.clone(),
            source,
        })?;
        Tokenizer::from_bytes(&bytes, &shown)
    }

    /// [`Tokenizer::from_file`] from the file's bytes (`shown` names it in errors).
    pub fn from_bytes(bytes: &[u8], shown: &str) -> Result<Tokenizer> {
        let shown = shown.to_string();
        let text = std::str::from_utf8(bytes).map_err(|e| {
            data_err(
                &shown,
                1 + bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count(),
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        let parsed = guard(|| serde_json::from_str::<hf::Tokenizer>(text))
            .map_err(|e| data_err(&shown, 0, e))?;
        let inner = parsed.map_err(|e| {
            data_err(
                &shown,
                e.line(),
                format!("not a valid Hugging Face tokenizer.json: {e}"),
            )
        })?;
        if inner.get_vocab_size(true) == 0 {
            return Err(data_err(&shown, 0, "the vocabulary is empty".into()));
        }
        // Some malformed files parse and fail only when used (a post-processor template naming
        // a special token it does not define panics inside the crate): encode once now, so the
        // error comes here and names the file.
        let trial = guard(|| inner.encode("a b", true))
            .and_then(|r| r.map(|_| ()).map_err(|e| e.to_string()));
        if let Err(e) = trial {
            return Err(data_err(
                &shown,
                0,
                format!("the tokenizer fails on a test input: {e}"),
            ));
        }
        let preset = Preset::infer(&inner);
        Ok(Tokenizer::wrap(inner, preset))
    }

    /// Builds a BERT WordPiece tokenizer from a `vocab.txt` (one token per line, id = line
    /// number - 1), with BERT's normalizer (`lowercase` for uncased checkpoints), pre-tokenizer,
    /// `##` continuation prefix, decoder and `[CLS] text [SEP]` post-processor.
    pub fn from_vocab_txt(path: impl AsRef<Path>, lowercase: bool) -> Result<Tokenizer> {
        const OP: &str = "Tokenizer::from_vocab_txt";
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: shown.clone(),
            source,
        })?;
        let mut vocab = serde_json::Map::new();
        for (i, line) in text.lines().enumerate() {
            let token = line.trim_end();
            if token.is_empty() {
                return Err(data_err(&shown, i + 1, "empty token".into()));
            }
            if vocab.insert(token.to_string(), i.into()).is_some() {
                return Err(data_err(
                    &shown,
                    i + 1,
                    format!("token {token:?} appears twice"),
                ));
            }
        }
        for needed in [BERT_UNK, BERT_CLS, BERT_SEP] {
            if !vocab.contains_key(needed) {
                return Err(data_err(&shown, 0, format!("no {needed} token")));
            }
        }
        // The WordPiece builder wants an `ahash` map; its serde form takes a JSON object (as
        // text: its deserializer borrows strings, which a `serde_json::Value` cannot lend).
        let model_json = serde_json::json!({
            "type": "WordPiece",
            "unk_token": BERT_UNK,
            "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": vocab,
        })
        .to_string();
        let model: WordPiece = serde_json::from_str(&model_json)
            .map_err(|e| data_err(&shown, 0, format!("cannot build WordPiece: {e}")))?;

        let mut inner = hf::Tokenizer::new(model);
        inner.with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)));
        inner.with_pre_tokenizer(Some(BertPreTokenizer));
        inner.with_decoder(Some(WordPieceDecoder::new("##".into(), true)));
        let specials: Vec<AddedToken> = Preset::Bert
            .special_tokens()
            .iter()
            .filter(|t| vocab.contains_key(**t))
            .map(|&t| AddedToken::from(t, true))
            .collect();
        inner.add_special_tokens(&specials);
        let template = bert_template(&inner, OP)?;
        inner.with_post_processor(Some(template));
        Ok(Tokenizer::wrap(inner, Preset::Bert))
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (pretty-printed), atomically: a
    /// temporary file beside `path`, then a rename.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| invalid("Tokenizer::save", format!("{shown}: {e}")))?;
        let mut tmp = OsString::from(path.as_os_str());
        tmp.push(".tmp");
        let io = |source| Error::Io {
            path: shown.clone(),
            source,
        };
        std::fs::write(&tmp, json).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Token ids of `text`. With `add_special_tokens`, the BERT preset wraps them in
    /// `[CLS] ... [SEP]`; the GPT preset adds nothing.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        Ok(self.encoding(text, add_special_tokens)?.get_ids().to_vec())
    }

    /// Token ids of `text` and, per token, its byte range `start..end` in `text`:
    /// `&text[start..end]` is what the token covers. Special tokens added around the text get
    /// `(0, 0)`. Used to map a character span, such as a QA answer, to a token span.
    ///
    /// Tokenizers trained here trim the space a byte-level token carries in front (`Ġworld`
    /// covers `world`); GPT-2's own file does not (`Ġworld` covers ` world`). A token holding
    /// part of a multi-byte character covers that whole character.
    pub fn encode_with_offsets(
        &self,
        text: &str,
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<ByteSpan>)> {
        let enc = self.encoding(text, add_special_tokens)?;
        Ok((enc.get_ids().to_vec(), enc.get_offsets().to_vec()))
    }

    /// Token ids of pre-split words and, per token, the index of the word it came from (`None`
    /// for special tokens). Used to align word-level NER tags with sub-word tokens
    /// ([`crate::data::batch::align_word_labels`]).
    ///
    /// The words are joined with single spaces and encoded as running text, so the ids are
    /// exactly those of `encode(&words.join(" "))`: a byte-level model sees `Ġworld` for a word
    /// after the first, as in pre-training, not a `world` it never saw at that place.
    pub fn encode_words<S: AsRef<str>>(
        &self,
        words: &[S],
        add_special_tokens: bool,
    ) -> Result<(Vec<u32>, Vec<Option<usize>>)> {
        // spans[w] = byte range of word w in the joined text.
        let mut text = String::new();
        let mut spans = Vec::with_capacity(words.len());
        for (w, word) in words.iter().enumerate() {
            if w > 0 {
                text.push(' ');
            }
            let start = text.len();
            text.push_str(word.as_ref());
            spans.push((start, text.len()));
        }
        let enc = self.encoding(&text, add_special_tokens)?;
        let word_ids = enc
            .get_offsets()
            .iter()
            .zip(enc.get_special_tokens_mask())
            .map(|(&(s, e), &special)| {
                if special != 0 {
                    return None;
                }
                // The first word ending after s; the token belongs to it if they overlap (a
                // zero-length token if it sits inside it). Ends grow with w, so this is a
                // binary search; empty words end at or before s and are never chosen.
                let w = spans.partition_point(|&(_, we)| we <= s);
                spans
                    .get(w)
                    .filter(|&&(ws, _)| ws < e.max(s + 1))
                    .map(|_| w)
            })
            .collect();
        Ok((enc.get_ids().to_vec(), word_ids))
    }

    /// The text of `ids`. With `skip_special_tokens`, special tokens are left out. An id
    /// outside the vocabulary is an error (the underlying crate would silently drop it).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        const OP: &str = "Tokenizer::decode";
        if let Some(&bad) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(invalid(
                OP,
                format!(
                    "token id {bad} is not in the vocabulary (size {})",
                    self.vocab_size
                ),
            ));
        }
        guard(|| self.inner.decode(ids, skip_special_tokens))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| invalid(OP, e))
    }

    /// The number of rows an embedding table needs: 1 + the largest id, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token (its vocabulary form, e.g. `Ġworld` or `##ing`), if it has one.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The vocabulary form of an id, if the id is in the vocabulary.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The padding id: `<pad>` (GPT) or `[PAD]` (BERT). `None` for a loaded tokenizer without
    /// one, such as GPT-2's (callers then usually pad with [`Tokenizer::eos_id`]).
    pub fn pad_id(&self) -> Option<u32> {
        self.special.pad
    }

    /// `<|endoftext|>` (GPT preset only).
    pub fn eos_id(&self) -> Option<u32> {
        self.special.eos
    }

    /// Same as [`Tokenizer::eos_id`]: GPT uses one token to start and to end a text.
    pub fn bos_id(&self) -> Option<u32> {
        self.special.eos
    }

    /// `[CLS]` (BERT preset only).
    pub fn cls_id(&self) -> Option<u32> {
        self.special.cls
    }

    /// `[SEP]` (BERT preset only).
    pub fn sep_id(&self) -> Option<u32> {
        self.special.sep
    }

    /// `[MASK]` (BERT preset only).
    pub fn mask_id(&self) -> Option<u32> {
        self.special.mask
    }

    /// The preset: chosen at training, inferred when loading.
    pub fn preset(&self) -> Preset {
        self.preset
    }

    /// The underlying Hugging Face tokenizer, for anything this wrapper does not expose.
    pub fn hf(&self) -> &hf::Tokenizer {
        &self.inner
    }

    fn encoding(&self, text: &str, add_special_tokens: bool) -> Result<hf::Encoding> {
        const OP: &str = "Tokenizer::encode";
        guard(|| self.inner.encode(text, add_special_tokens))
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(|e| invalid(OP, e))
    }
}

/// `[CLS] $A [SEP]` and `[CLS] $A [SEP] $B:1 [SEP]:1` with the ids `inner` gives those tokens.
fn bert_template(inner: &hf::Tokenizer, op: &'static str) -> Result<TemplateProcessing> {
    let id = |t: &str| {
        inner
            .token_to_id(t)
            .ok_or_else(|| invalid(op, format!("no {t} token in the vocabulary")))
    };
    let (cls, sep) = (id(BERT_CLS)?, id(BERT_SEP)?);
    let bad = |e: String| invalid(op, format!("post-processor template: {e}"));
    TemplateProcessing::builder()
        .try_single(format!("{BERT_CLS} $A {BERT_SEP}"))
        .map_err(bad)?
        .try_pair(format!("{BERT_CLS} $A {BERT_SEP} $B:1 {BERT_SEP}:1"))
        .map_err(bad)?
        .special_tokens(vec![(BERT_CLS, cls), (BERT_SEP, sep)])
        .build()
        .map_err(|e| bad(e.to_string()))
}

/// Runs a call into the `tokenizers` crate, turning a panic inside it (on input it did not
/// expect) into an error message: user input must never panic the program.
fn guard<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        format!("the tokenizers crate panicked: {msg}")
    })
}

fn invalid(op: &'static str, detail: impl Into<String>) -> Error {
    Error::Invalid {
        op,
        detail: detail.into(),
    }
}

fn data_err(path: &str, line: usize, detail: String) -> Error {
    Error::Data {
        path: path.to_string(),
        line,
        detail,
    }
}
