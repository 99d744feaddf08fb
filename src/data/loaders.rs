//! Task files a user brings: JSONL or CSV, one example per line (or CSV record).
//!
//! The format follows the extension: `.jsonl`, `.json-lines` or `.ndjson` for JSON lines, `.csv`
//! for RFC 4180 CSV with a header row. Fields by [`TaskShape`]:
//!
//! | shape | fields | JSONL example |
//! |---|---|---|
//! | classification | `text`, `label` | `{"text": "The pho was not bad.", "label": "positive"}` |
//! | tagging | `tokens`, `tags` | `{"tokens": ["Anna", "Lee"], "tags": ["B-PER", "I-PER"]}` |
//! | span | `context`, `question`, `answer`, optional `answer_start` | `{"context": "...", "question": "...", "answer": "Hanoi"}` |
//! | generation | `prompt`, `response` | `{"prompt": "User: hi\nAssistant:", "response": "Hello!"}` |
//!
//! In CSV, `tokens` and `tags` are space-separated in one field each. Other columns or keys are
//! ignored.
//!
//! **Labels.** A classification label may be a name from the shape's label list or an integer
//! index into it (`"positive"`, `1` and `"1"` are the same label for sentiment). With an empty
//! label list only integers are accepted: the file then defines the classes. Tags work the same
//! way: names from the tag list, or integers into it; an empty tag list accepts any tag name.
//! [`save_jsonl`] writes names whenever the list has them, so files stay readable.
//!
//! **Errors.** A malformed file never panics: it gives [`Error::Data`] naming the file, the
//! 1-based line (where the record starts; 0 for a problem with the whole file) and the field.
//! A file that cannot be read gives [`Error::Io`]. Refused as well: an empty `text` or
//! `prompt`, a BIO tag `I-X` that does not follow `B-X` or `I-X`, bytes that are not UTF-8 (the
//! line and byte are named) and a file over [`MAX_DATA_BYTES`]. [`load_lines`] keeps each
//! example's line, so that an error found later, when the task encodes every split before
//! training (a QA example over `max_len`, say), still names it.
//!
//! **Preference files.** [`load_preference`] reads TRL's preference format and [`load_kto`] its
//! unpaired one, in JSONL or CSV, into [`PreferencePair`]s and [`KtoExample`]s:
//!
//! | reader | fields | JSONL example |
//! |---|---|---|
//! | [`load_preference`] | `prompt`, `chosen`, `rejected` | `{"prompt": "Question: Where does Anna live?\nAnswer:", "chosen": "In Lima.", "rejected": "I don't know."}` |
//! | [`load_kto`] | `prompt`, `completion`, `label` (a JSON boolean; `true`/`false` in CSV) | `{"prompt": "...", "completion": "In Lima.", "label": true}` |
//!
//! In JSONL, TRL's conversational form is read too: `chosen` and `rejected` (or `completion`)
//! as lists of `{"role", "content"}` messages whose last message is the assistant's response,
//! with an optional `prompt` list of messages before them (TRL's explicit prompt; without it
//! the messages before each response are the prompt, and must be the same in `chosen` and
//! `rejected`). The prompt is then written in the dialogue task's format, one `User: ...` /
//! `Assistant: ...` / `System: ...` line per message and `Assistant:` last, so a conversation
//! reads as the built-in dialogue does. (A chat template of a tokenizer is not applied: the
//! tiny models have none.) The same errors apply, and empty prompts and responses are refused.

use std::path::Path;

use serde_json::{json, Map, Value};

pub use super::preference::{KtoExample, PreferencePair};
pub use super::tasks::{Example, TaskShape};
use crate::error::{Error, Result};

/// Reads every example of a JSONL or CSV file; see the module docs for the fields.
pub fn load(path: &Path, shape: TaskShape) -> Result<Vec<Example>> {
    Ok(load_lines(path, shape)?.0)
}

/// The largest data file read: 512 MiB, far more text than the tiny models train on; a larger
/// "file" (or a device such as `/dev/zero`) is refused rather than read into memory.
pub const MAX_DATA_BYTES: u64 = 512 << 20;

/// [`load`], with the 1-based line each example starts on.
pub fn load_lines(path: &Path, shape: TaskShape) -> Result<(Vec<Example>, Vec<usize>)> {
    Format::of(path)?;
    let bytes = read_bytes(path)?;
    parse_lines(&bytes, path, shape)
}

/// The examples of a data file's bytes, with the line each starts on: what [`load_lines`] does
/// once it read `path`, which still names the file in errors and picks the format by its
/// extension (the file itself is not touched).
pub fn parse_lines(
    bytes: &[u8],
    path: &Path,
    shape: TaskShape,
) -> Result<(Vec<Example>, Vec<usize>)> {
    parse_records(bytes, path, required_fields(shape), |r| example(r, shape))
}

/// What every reader does with a data file's bytes: checks the size and the UTF-8, splits the
/// records by the format of `path`'s extension (a CSV header must name every `required`
/// column), and builds one item from each record, naming the file and the record's line in
/// any error. Returns the items and the line each starts on.
fn parse_records<T>(
    bytes: &[u8],
    path: &Path,
    required: &[&str],
    item: impl Fn(&Record) -> Detail<T>,
) -> Result<(Vec<T>, Vec<usize>)> {
    let format = Format::of(path)?;
    let text = text_of(bytes, path)?;
    let records = match format {
        Format::Jsonl => jsonl_records(text),
        Format::Csv => csv_records(text, required),
    }
    .map_err(|(line, detail)| data_err(path, line, detail))?;
    let items = records
        .iter()
        .map(|r| item(r).map_err(|detail| data_err(path, r.line, detail)))
        .collect::<Result<_>>()?;
    Ok((items, records.iter().map(|r| r.line).collect()))
}

/// Reads every preference pair of a JSONL or CSV file (see the module's doc, "Preference
/// files").
pub fn load_preference(path: &Path) -> Result<Vec<PreferencePair>> {
    Ok(load_preference_lines(path)?.0)
}

/// [`load_preference`], with the 1-based line each pair starts on.
pub fn load_preference_lines(path: &Path) -> Result<(Vec<PreferencePair>, Vec<usize>)> {
    Format::of(path)?;
    let bytes = read_bytes(path)?;
    parse_preference(&bytes, path)
}

/// The preference pairs of a data file's bytes, as [`parse_lines`] reads task examples.
pub fn parse_preference(bytes: &[u8], path: &Path) -> Result<(Vec<PreferencePair>, Vec<usize>)> {
    parse_records(
        bytes,
        path,
        &["prompt", "chosen", "rejected"],
        preference_pair,
    )
}

/// Reads every KTO example (`{prompt, completion, label}`) of a JSONL or CSV file.
pub fn load_kto(path: &Path) -> Result<Vec<KtoExample>> {
    Ok(load_kto_lines(path)?.0)
}

/// [`load_kto`], with the 1-based line each example starts on.
pub fn load_kto_lines(path: &Path) -> Result<(Vec<KtoExample>, Vec<usize>)> {
    Format::of(path)?;
    let bytes = read_bytes(path)?;
    parse_kto(&bytes, path)
}

/// The KTO examples of a data file's bytes, as [`parse_lines`] reads task examples.
pub fn parse_kto(bytes: &[u8], path: &Path) -> Result<(Vec<KtoExample>, Vec<usize>)> {
    parse_records(bytes, path, &["prompt", "completion", "label"], kto_example)
}

/// A data file's bytes, at most one more than [`MAX_DATA_BYTES`] (so [`text_of`] can refuse a
/// larger file without reading it whole).
fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| Error::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(data_err(path, 0, "is a directory, not a data file".into()));
    }
    let mut bytes = Vec::new();
    file.take(MAX_DATA_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    Ok(bytes)
}

/// A data file's text: at most [`MAX_DATA_BYTES`], valid UTF-8 (an error names the line and
/// the byte of the first invalid sequence).
fn text_of<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a str> {
    if bytes.len() as u64 > MAX_DATA_BYTES {
        return Err(data_err(
            path,
            0,
            format!(
                "holds more than {} MiB; tunelab reads data files of at most that size",
                MAX_DATA_BYTES >> 20
            ),
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let before = &bytes[..at];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let column = at - before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
        data_err(
            path,
            line,
            format!(
                "invalid UTF-8 at byte {column} of the line (byte {at} of the file): data files must be UTF-8 text"
            ),
        )
    })
}

/// Writes examples as JSON lines, labels as names where `shape` has them.
pub fn save_jsonl(path: &Path, examples: &[Example], shape: TaskShape) -> Result<()> {
    let mut out = String::new();
    for (i, ex) in examples.iter().enumerate() {
        check_shape(ex, shape, i)?;
        let value = match ex {
            Example::Classification { text, label } => {
                json!({ "text": text, "label": label_value(*label, shape) })
            }
            Example::Tagging { tokens, tags } => json!({ "tokens": tokens, "tags": tags }),
            Example::Span {
                context,
                question,
                answer,
                answer_start,
            } => json!({
                "context": context,
                "question": question,
                "answer": answer,
                "answer_start": answer_start,
            }),
            Example::Generation { prompt, response } => {
                json!({ "prompt": prompt, "response": response })
            }
        };
        out.push_str(&value.to_string());
        out.push('\n');
    }
    write(path, &out)
}

/// Writes examples as CSV with a header row, quoting fields only where RFC 4180 needs it.
/// Tokens containing whitespace cannot be written (the `tokens` field is space-separated).
pub fn save_csv(path: &Path, examples: &[Example], shape: TaskShape) -> Result<()> {
    let header = match shape {
        TaskShape::Classification { .. } => "text,label",
        TaskShape::Tagging { .. } => "tokens,tags",
        TaskShape::Span => "context,question,answer,answer_start",
        TaskShape::Generation => "prompt,response",
    };
    let mut out = format!("{header}\r\n");
    for (i, ex) in examples.iter().enumerate() {
        check_shape(ex, shape, i)?;
        let fields: Vec<String> = match ex {
            Example::Classification { text, label } => {
                let label = match label_value(*label, shape) {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                vec![text.clone(), label]
            }
            Example::Tagging { tokens, tags } => {
                if let Some(t) = tokens
                    .iter()
                    .chain(tags)
                    .find(|t| t.contains(char::is_whitespace))
                {
                    return Err(Error::Invalid {
                        op: "save_csv",
                        detail: format!("example {i}: token or tag {t:?} contains whitespace"),
                    });
                }
                vec![tokens.join(" "), tags.join(" ")]
            }
            Example::Span {
                context,
                question,
                answer,
                answer_start,
            } => vec![
                context.clone(),
                question.clone(),
                answer.clone(),
                answer_start.to_string(),
            ],
            Example::Generation { prompt, response } => vec![prompt.clone(), response.clone()],
        };
        let quoted: Vec<String> = fields.iter().map(|f| csv_quote(f)).collect();
        out.push_str(&quoted.join(","));
        out.push_str("\r\n");
    }
    write(path, &out)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Jsonl,
    Csv,
}

impl Format {
    fn of(path: &Path) -> Result<Format> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if [".jsonl", ".json-lines", ".ndjson"]
            .iter()
            .any(|e| name.ends_with(e))
        {
            Ok(Format::Jsonl)
        } else if name.ends_with(".csv") {
            Ok(Format::Csv)
        } else {
            Err(data_err(
                path,
                0,
                "unknown file extension: expected .jsonl, .json-lines, .ndjson or .csv".into(),
            ))
        }
    }
}

/// Where a user's examples come from: one file split three ways, or their own splits (the
/// names of Hugging Face's example scripts, `--train_file`, `--validation_file`, `--test_file`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataFiles {
    /// One file, split in file order into train, validation and test ([`split_in_order`]).
    One(std::path::PathBuf),
    /// The user's own splits: every example of `train` trains, `validation` is what evaluation
    /// during training (and `tunelab sweep`) scores, `test` is scored once at the end (none: no
    /// test score).
    Splits {
        train: std::path::PathBuf,
        validation: std::path::PathBuf,
        test: Option<std::path::PathBuf>,
    },
}

/// The three splits a user's data gives.
#[derive(Debug, Clone, Default)]
pub struct UserSplits {
    pub train: Vec<Example>,
    pub validation: Vec<Example>,
    pub test: Vec<Example>,
    /// Where each example came from, so that an error found later (encoding) names its line.
    pub sources: SplitSources,
}

/// The file and the 1-based line of each example of a split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Source {
    pub path: std::path::PathBuf,
    pub lines: Vec<usize>,
}

/// The [`Source`] of each split; `None` for built-in data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitSources {
    pub train: Option<Source>,
    pub validation: Option<Source>,
    pub test: Option<Source>,
}

impl DataFiles {
    /// Reads the files and returns the three splits; an empty or too small file is an error
    /// naming it and its count.
    pub fn load(&self, shape: TaskShape) -> Result<UserSplits> {
        match self {
            DataFiles::One(path) => {
                let (all, lines) = load_lines(path, shape)?;
                let (train, validation, test) = split_in_order(all.len()).ok_or_else(|| {
                    data_err(
                        path,
                        0,
                        format!(
                            "holds {} examples; splitting one file into train, validation and \
                             test needs at least 3 (or pass --train-file and --validation-file)",
                            all.len()
                        ),
                    )
                })?;
                let source = |r: std::ops::Range<usize>| {
                    Some(Source {
                        path: path.clone(),
                        lines: lines[r].to_vec(),
                    })
                };
                Ok(UserSplits {
                    sources: SplitSources {
                        train: source(train.clone()),
                        validation: source(validation.clone()),
                        test: source(test.clone()),
                    },
                    train: all[train].to_vec(),
                    validation: all[validation].to_vec(),
                    test: all[test].to_vec(),
                })
            }
            DataFiles::Splits {
                train,
                validation,
                test,
            } => {
                let nonempty = |path: &Path| -> Result<(Vec<Example>, Option<Source>)> {
                    let (ex, lines) = load_lines(path, shape)?;
                    if ex.is_empty() {
                        return Err(data_err(path, 0, "holds no examples".into()));
                    }
                    Ok((
                        ex,
                        Some(Source {
                            path: path.to_path_buf(),
                            lines,
                        }),
                    ))
                };
                let (train, train_source) = nonempty(train)?;
                let (validation, validation_source) = nonempty(validation)?;
                let (test, test_source) = match test {
                    Some(p) => nonempty(p)?,
                    None => (vec![], None),
                };
                Ok(UserSplits {
                    train,
                    validation,
                    test,
                    sources: SplitSources {
                        train: train_source,
                        validation: validation_source,
                        test: test_source,
                    },
                })
            }
        }
    }

    /// What a user should hear before training: validation and test are the same file (then the
    /// test score is not a held-out estimate, since choices made on validation saw it).
    pub fn warnings(&self) -> Vec<String> {
        let DataFiles::Splits {
            validation,
            test: Some(test),
            ..
        } = self
        else {
            return vec![];
        };
        let same = match (validation.canonicalize(), test.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => validation == test,
        };
        if same {
            vec![format!(
                "--validation-file and --test-file are the same file ({}): the test score is not \
                 held out from what was chosen on validation",
                test.display()
            )]
        } else {
            vec![]
        }
    }
}

/// The index ranges of train, validation and test when `n` examples in file order are split
/// 80/10/10: validation and test take a tenth each (at least one example), train the rest, so
/// the first examples train and the last are tested. `None` below 3 examples.
pub fn split_in_order(
    n: usize,
) -> Option<(
    std::ops::Range<usize>,
    std::ops::Range<usize>,
    std::ops::Range<usize>,
)> {
    if n < 3 {
        return None;
    }
    let held = (n / 10).max(1);
    let train = n - 2 * held;
    Some((0..train, train..train + held, train + held..n))
}

fn data_err(path: &Path, line: usize, detail: String) -> Error {
    Error::Data {
        path: path.display().to_string(),
        line,
        detail,
    }
}

fn write(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).map_err(|source| Error::Io {
        path: path.display().to_string(),
        source,
    })
}

fn check_shape(ex: &Example, shape: TaskShape, i: usize) -> Result<()> {
    let ok = matches!(
        (ex, shape),
        (
            Example::Classification { .. },
            TaskShape::Classification { .. }
        ) | (Example::Tagging { .. }, TaskShape::Tagging { .. })
            | (Example::Span { .. }, TaskShape::Span)
            | (Example::Generation { .. }, TaskShape::Generation)
    );
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            op: "save",
            detail: format!("example {i} is {}, not {shape:?}", ex.shape_name()),
        })
    }
}

/// A label as written to a file: its name if the shape has one, else the integer.
fn label_value(label: usize, shape: TaskShape) -> Value {
    match shape {
        TaskShape::Classification { labels } if label < labels.len() => json!(labels[label]),
        _ => json!(label),
    }
}

/// A result whose error says what is wrong with one field; the caller adds file and line.
type Detail<T> = std::result::Result<T, String>;
/// A result whose error is a line and what is wrong there; the caller adds the file.
type Located<T> = std::result::Result<T, (usize, String)>;

/// One record of a file, whatever the format: where it starts and its named fields.
struct Record {
    line: usize,
    fields: Fields,
}

enum Fields {
    Json(Map<String, Value>),
    /// Header names and the record's values, in the same order.
    Csv(Vec<(String, String)>),
}

/// A field's value: JSON keeps its type, CSV gives text.
enum Field<'a> {
    Json(&'a Value),
    Text(&'a str),
}

impl Record {
    fn get(&self, name: &str) -> Detail<Field<'_>> {
        let found = match &self.fields {
            Fields::Json(map) => map.get(name).map(Field::Json),
            Fields::Csv(pairs) => pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| Field::Text(v)),
        };
        found.ok_or_else(|| format!("field {name:?}: missing"))
    }

    fn string(&self, name: &str) -> Detail<String> {
        match self.get(name)? {
            Field::Text(s) => Ok(s.to_string()),
            Field::Json(Value::String(s)) => Ok(s.clone()),
            Field::Json(v) => Err(format!(
                "field {name:?}: expected a string, got {}",
                kind(v)
            )),
        }
    }

    /// A list of words: a JSON array of strings or integers, or a space-separated CSV field.
    fn words(&self, name: &str) -> Detail<Vec<String>> {
        match self.get(name)? {
            Field::Text(s) => Ok(s.split_whitespace().map(str::to_string).collect()),
            Field::Json(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) if n.is_u64() => Ok(n.to_string()),
                    v => Err(format!(
                        "field {name:?}: item {i} should be a string, got {}",
                        kind(v)
                    )),
                })
                .collect(),
            Field::Json(v) => Err(format!(
                "field {name:?}: expected an array, got {}",
                kind(v)
            )),
        }
    }

    /// A non-negative integer field, if present: JSON number or CSV digits.
    fn index(&self, name: &str) -> Detail<Option<usize>> {
        let bad =
            |got: String| format!("field {name:?}: expected a non-negative integer, got {got}");
        match self.get(name) {
            Err(_) => Ok(None),
            Ok(Field::Text(s)) if s.trim().is_empty() => Ok(None),
            Ok(Field::Text(s)) => s
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("{s:?}"))),
            Ok(Field::Json(Value::Null)) => Ok(None),
            Ok(Field::Json(Value::Number(n))) => n
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| bad(n.to_string())),
            Ok(Field::Json(v)) => Err(bad(kind(v).to_string())),
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A label given as a name from `names` or as an integer index (in range, if `names` is
/// non-empty).
fn resolve(field: &str, given: &str, names: &[&str]) -> Detail<usize> {
    if let Some(i) = names.iter().position(|n| *n == given) {
        return Ok(i);
    }
    let list = if names.is_empty() {
        "integers only: no label names were given".to_string()
    } else {
        format!(
            "one of {} or an index below {}",
            names.join(", "),
            names.len()
        )
    };
    match given.trim().parse::<usize>() {
        Ok(i) if names.is_empty() || i < names.len() => Ok(i),
        _ => {
            let noun = if field == "tags" { "tag" } else { "label" };
            Err(format!(
                "field {field:?}: unknown {noun} {given:?} (expected {list})"
            ))
        }
    }
}

/// Builds the example of `shape` from one record; the error names the field.
fn example(r: &Record, shape: TaskShape) -> Detail<Example> {
    match shape {
        TaskShape::Classification { labels } => {
            let text = r.string("text")?;
            if text.trim().is_empty() {
                return Err("field \"text\": empty".into());
            }
            let given = match r.get("label")? {
                Field::Text(s) => s.to_string(),
                Field::Json(Value::String(s)) => s.clone(),
                Field::Json(Value::Number(n)) if n.is_u64() => n.to_string(),
                Field::Json(v) => {
                    return Err(format!(
                        "field \"label\": expected a label name or a non-negative integer, got {}",
                        kind(v)
                    ))
                }
            };
            let label = resolve("label", &given, labels)?;
            Ok(Example::Classification { text, label })
        }
        TaskShape::Tagging { tags: names } => {
            let tokens = r.words("tokens")?;
            let given = r.words("tags")?;
            if tokens.is_empty() {
                return Err("field \"tokens\": empty".into());
            }
            if given.len() != tokens.len() {
                return Err(format!(
                    "field \"tags\": {} tags for {} tokens",
                    given.len(),
                    tokens.len()
                ));
            }
            let tags = if names.is_empty() {
                given
            } else {
                given
                    .iter()
                    .map(|t| resolve("tags", t, names).map(|i| names[i].to_string()))
                    .collect::<Detail<_>>()?
            };
            check_bio(&tags)?;
            Ok(Example::Tagging { tokens, tags })
        }
        TaskShape::Span => {
            let context = r.string("context")?;
            let question = r.string("question")?;
            let answer = r.string("answer")?;
            if answer.is_empty() {
                return Err("field \"answer\": empty".into());
            }
            let answer_start = match r.index("answer_start")? {
                Some(at) => {
                    let found = at
                        .checked_add(answer.len())
                        .and_then(|end| context.get(at..end));
                    if found != Some(answer.as_str()) {
                        return Err(format!(
                            "field \"answer_start\": the context at byte {at} is not the answer {answer:?}"
                        ));
                    }
                    at
                }
                None => context
                    .find(&answer)
                    .ok_or_else(|| format!("field \"answer\": {answer:?} not found in context"))?,
            };
            Ok(Example::Span {
                context,
                question,
                answer,
                answer_start,
            })
        }
        TaskShape::Generation => {
            let prompt = r.string("prompt")?;
            if prompt.trim().is_empty() {
                return Err("field \"prompt\": empty (generation continues a prompt)".into());
            }
            Ok(Example::Generation {
                prompt,
                response: r.string("response")?,
            })
        }
    }
}

/// A string field that holds something besides whitespace; `why` says what it is for.
fn nonempty(r: &Record, name: &str, why: &str) -> Detail<String> {
    let s = r.string(name)?;
    if s.trim().is_empty() {
        return Err(format!("field {name:?}: empty ({why})"));
    }
    Ok(s)
}

/// One message of a conversation: its role and its text.
type Message = (String, String);

/// The messages of a conversational field: a JSON list of `{"role", "content"}` objects, the
/// roles `system`, `user` or `assistant`, the contents strings.
fn messages(r: &Record, name: &str) -> Detail<Vec<Message>> {
    let Field::Json(Value::Array(items)) = r.get(name)? else {
        return Err(format!(
            "field {name:?}: expected a list of {{\"role\", \"content\"}} messages"
        ));
    };
    if items.is_empty() {
        return Err(format!("field {name:?}: no messages"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let at = format!("field {name:?}: message {}", i + 1);
            let Value::Object(m) = m else {
                return Err(format!(
                    "{at}: expected an object with \"role\" and \"content\", got {}",
                    kind(m)
                ));
            };
            let role = match m.get("role") {
                Some(Value::String(s)) if ["system", "user", "assistant"].contains(&s.as_str()) => {
                    s.clone()
                }
                Some(Value::String(s)) => {
                    return Err(format!(
                        "{at}: unknown role {s:?} (expected system, user or assistant)"
                    ))
                }
                Some(v) => {
                    return Err(format!(
                        "{at}: \"role\" should be a string, got {}",
                        kind(v)
                    ))
                }
                None => return Err(format!("{at}: \"role\" missing")),
            };
            match m.get("content") {
                Some(Value::String(s)) => Ok((role, s.clone())),
                Some(v) => Err(format!(
                    "{at}: \"content\" should be a string, got {}",
                    kind(v)
                )),
                None => Err(format!("{at}: \"content\" missing")),
            }
        })
        .collect()
}

/// A conversation as a prompt in the dialogue task's format: one `Role: content` line per
/// message, then `Assistant:` for the response to follow.
fn render_prompt(messages: &[Message]) -> String {
    let mut out = String::new();
    for (role, content) in messages {
        let mut label = role.clone();
        label[..1].make_ascii_uppercase();
        out.push_str(&format!("{label}: {content}\n"));
    }
    out.push_str("Assistant:");
    out
}

/// The prompt and the response of a conversational record: the response is the last message
/// of `field` (the assistant's), the prompt the messages of `prompt` (if the record has them:
/// TRL's explicit prompt) followed by those of `field` before the response (its implicit one).
fn conversation(r: &Record, field: &str) -> Detail<(Vec<Message>, String)> {
    let mut msgs = messages(r, field)?;
    let Some((role, response)) = msgs.pop() else {
        return Err(format!("field {field:?}: no messages"));
    };
    if role != "assistant" {
        return Err(format!(
            "field {field:?}: the last message must be the assistant's response, got role {role:?}"
        ));
    }
    if response.trim().is_empty() {
        return Err(format!("field {field:?}: the response is empty"));
    }
    let mut prompt = match r.get("prompt") {
        Err(_) | Ok(Field::Json(Value::Null)) => vec![],
        Ok(Field::Json(Value::Array(_))) => messages(r, "prompt")?,
        Ok(_) => {
            return Err(format!(
                "field \"prompt\": expected a list of messages, as {field:?} is"
            ))
        }
    };
    prompt.extend(msgs);
    Ok((prompt, response))
}

/// A preference pair: `prompt`, `chosen` and `rejected` strings, or TRL's conversational form.
fn preference_pair(r: &Record) -> Detail<PreferencePair> {
    if let Ok(Field::Json(Value::Array(_))) = r.get("chosen") {
        let (prompt, chosen) = conversation(r, "chosen")?;
        let (other, rejected) = conversation(r, "rejected")?;
        if other != prompt {
            return Err("field \"rejected\": its messages before the response differ from those of \"chosen\" (both must answer the same prompt)".into());
        }
        if prompt.is_empty() {
            return Err(
                "field \"prompt\": no messages before the response (a response answers a prompt)"
                    .into(),
            );
        }
        return Ok(PreferencePair {
            prompt: render_prompt(&prompt),
            chosen,
            rejected,
        });
    }
    Ok(PreferencePair {
        prompt: nonempty(r, "prompt", "a response answers a prompt")?,
        chosen: nonempty(r, "chosen", "a preference ranks two responses")?,
        rejected: nonempty(r, "rejected", "a preference ranks two responses")?,
    })
}

/// A KTO example: `prompt` and `completion` strings (or TRL's conversational form) and a
/// boolean `label`, true for a desirable completion (`true`/`false` in CSV).
fn kto_example(r: &Record) -> Detail<KtoExample> {
    let label = match r.get("label")? {
        Field::Json(Value::Bool(b)) => *b,
        Field::Text(s) if s.trim().eq_ignore_ascii_case("true") => true,
        Field::Text(s) if s.trim().eq_ignore_ascii_case("false") => false,
        Field::Text(s) => {
            return Err(format!(
                "field \"label\": expected true or false, got {s:?}"
            ))
        }
        Field::Json(v) => {
            return Err(format!(
                "field \"label\": expected a boolean (true: the completion is desirable), got {}",
                kind(v)
            ))
        }
    };
    if let Ok(Field::Json(Value::Array(_))) = r.get("completion") {
        let (prompt, completion) = conversation(r, "completion")?;
        if prompt.is_empty() {
            return Err(
                "field \"prompt\": no messages before the response (a response answers a prompt)"
                    .into(),
            );
        }
        return Ok(KtoExample {
            prompt: render_prompt(&prompt),
            completion,
            label,
        });
    }
    Ok(KtoExample {
        prompt: nonempty(r, "prompt", "a completion answers a prompt")?,
        completion: nonempty(
            r,
            "completion",
            "an empty completion is neither good nor bad",
        )?,
        label,
    })
}

/// BIO tags are well formed: an `I-X` continues an entity, so it follows a `B-X` or an `I-X`
/// of the same type X. Tags outside the BIO scheme are not checked.
fn check_bio(tags: &[String]) -> Detail<()> {
    let mut prev: Option<&str> = None;
    for (i, t) in tags.iter().enumerate() {
        if let Some(kind) = t.strip_prefix("I-") {
            let continues = prev.is_some_and(|p| {
                p.strip_prefix("B-")
                    .or_else(|| p.strip_prefix("I-"))
                    .is_some_and(|k| k == kind)
            });
            if !continues {
                let after = match prev {
                    None => "at the start of the sentence".to_string(),
                    Some(p) => format!("after {p:?}"),
                };
                return Err(format!(
                    "field \"tags\": tag {} is {t:?} {after}: an I-{kind} must follow B-{kind} or I-{kind}",
                    i + 1
                ));
            }
        }
        prev = Some(t);
    }
    Ok(())
}

/// One JSON object per non-blank line.
fn jsonl_records(text: &str) -> Located<Vec<Record>> {
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(line) {
            Ok(Value::Object(map)) => records.push(Record {
                line: line_no,
                fields: Fields::Json(map),
            }),
            Ok(v) => return Err((line_no, format!("expected a JSON object, got {}", kind(&v)))),
            Err(e) => return Err((line_no, format!("invalid JSON: {e}"))),
        }
    }
    Ok(records)
}

/// The fields every record of `shape` must have (`answer_start` is optional).
fn required_fields(shape: TaskShape) -> &'static [&'static str] {
    match shape {
        TaskShape::Classification { .. } => &["text", "label"],
        TaskShape::Tagging { .. } => &["tokens", "tags"],
        TaskShape::Span => &["context", "question", "answer"],
        TaskShape::Generation => &["prompt", "response"],
    }
}

/// Records of a CSV file with a header row, each keyed by the header's column names. A header
/// without a `required` column is reported at line 1, before any record.
fn csv_records(text: &str, required: &[&str]) -> Located<Vec<Record>> {
    let text = text.trim_start_matches('\u{feff}');
    let rows = parse_csv(text).map_err(|(line, column, detail)| {
        // Name the column from the header when the error is past it.
        let header = parse_csv(text.lines().next().unwrap_or_default()).ok();
        let name = header
            .and_then(|h| h.into_iter().next())
            .and_then(|(_, cols)| cols.get(column).cloned())
            .filter(|_| line > 1);
        match name {
            Some(name) => (
                line,
                format!("field {:?} (column {}): {detail}", name.trim(), column + 1),
            ),
            None => (line, format!("column {}: {detail}", column + 1)),
        }
    })?;
    let mut rows = rows.into_iter();
    let Some((_, header)) = rows.next() else {
        return Err((0, "empty file: expected a header row".into()));
    };
    let header: Vec<String> = header.iter().map(|h| h.trim().to_string()).collect();
    if let Some(missing) = required.iter().find(|r| !header.iter().any(|h| h == *r)) {
        return Err((
            1,
            format!(
                "field {missing:?}: missing column in the header (found: {})",
                header.join(", ")
            ),
        ));
    }
    rows.map(|(line, values)| {
        if values.len() != header.len() {
            return Err((
                line,
                format!(
                    "expected {} fields ({}), found {}",
                    header.len(),
                    header.join(","),
                    values.len()
                ),
            ));
        }
        Ok(Record {
            line,
            fields: Fields::Csv(header.iter().cloned().zip(values).collect()),
        })
    })
    .collect()
}

/// A CSV record: the 1-based line it starts on, and its fields.
type Row = (usize, Vec<String>);
/// A CSV syntax error: the line, the 0-based column and what is wrong.
type CsvError = (usize, usize, String);

/// RFC 4180 CSV: fields separated by commas, records by CRLF or LF; a field in double quotes may
/// hold commas, line breaks and doubled quotes (`""`). Blank lines are skipped. Returns each
/// record with the 1-based line it starts on; an error gives the line, the 0-based column and
/// what is wrong.
fn parse_csv(text: &str) -> std::result::Result<Vec<Row>, CsvError> {
    let mut records = Vec::new();
    let (mut fields, mut field) = (Vec::new(), String::new());
    let (mut line, mut record_line, mut quote_line) = (1, 1, 1);
    let (mut in_quotes, mut after_quote) = (false, false);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => {
                    in_quotes = false;
                    after_quote = true;
                }
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            ',' => {
                fields.push(std::mem::take(&mut field));
                after_quote = false;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                let blank = fields.len() == 1 && fields[0].is_empty() && !after_quote;
                if !blank {
                    records.push((record_line, std::mem::take(&mut fields)));
                }
                fields.clear();
                after_quote = false;
                line += 1;
                record_line = line;
            }
            '"' if field.is_empty() && !after_quote => {
                in_quotes = true;
                quote_line = line;
            }
            '"' => {
                return Err((
                    line,
                    fields.len(),
                    "a quote inside an unquoted field (quote the whole field and double the quote)"
                        .into(),
                ))
            }
            _ if after_quote => {
                return Err((
                    line,
                    fields.len(),
                    format!("unexpected {c:?} after a closing quote (expected a comma or the end of the line)"),
                ))
            }
            _ => field.push(c),
        }
    }
    if in_quotes {
        return Err((quote_line, fields.len(), "unterminated quote".into()));
    }
    if !field.is_empty() || !fields.is_empty() || after_quote {
        fields.push(field);
        records.push((record_line, fields));
    }
    Ok(records)
}

/// A CSV field, quoted when it holds a comma, a quote, a line break or edge spaces.
fn csv_quote(field: &str) -> String {
    let needs = field.contains([',', '"', '\n', '\r']) || field.trim() != field;
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::tasks::{build_with, Sizes, Task, SENTIMENT_LABELS};
    use crate::data::world::World;
    use std::path::PathBuf;

    /// A fresh directory for one test, under the system temp dir.
    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("tunelab-loaders-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create temp dir");
        dir
    }

    fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write test file");
        path
    }

    /// Loading `text` as `name` fails with a data error that names the file, the line and `words`.
    fn assert_data_error(
        dir: &Path,
        name: &str,
        text: &str,
        shape: TaskShape,
        line: usize,
        words: &[&str],
    ) {
        let path = write_file(dir, name, text);
        let err = load(&path, shape).expect_err("broken file should not load");
        let msg = err.to_string();
        assert!(
            matches!(err, Error::Data { line: l, .. } if l == line),
            "{name}: {msg}"
        );
        assert!(
            msg.starts_with(&format!("{}:{line}: ", path.display())),
            "{name}: {msg}"
        );
        for w in words {
            assert!(msg.contains(w), "{name}: {msg:?} should mention {w:?}");
        }
    }

    #[test]
    fn every_task_round_trips_through_jsonl_and_csv() {
        let world = World::generate(3);
        let dir = temp_dir("roundtrip");
        let sizes = Sizes {
            train: 40,
            validation: 5,
            test: 5,
        };
        for task in Task::all() {
            let examples = build_with(task, &world, 1, sizes).train;
            for ext in ["jsonl", "csv"] {
                let path = dir.join(format!("{}.{ext}", task.name()));
                match ext {
                    "jsonl" => save_jsonl(&path, &examples, task.shape()).unwrap(),
                    _ => save_csv(&path, &examples, task.shape()).unwrap(),
                }
                let loaded = load(&path, task.shape()).unwrap();
                assert_eq!(loaded, examples, "{task:?} via {ext}");
            }
        }
        // Labels are written as names.
        let text = std::fs::read_to_string(dir.join("sentiment.jsonl")).unwrap();
        assert!(text.contains("\"label\":\"positive\""), "{text}");
    }

    #[test]
    fn labels_may_be_names_or_integers() {
        let dir = temp_dir("labels");
        let shape = TaskShape::Classification {
            labels: &SENTIMENT_LABELS,
        };
        let path = write_file(
            &dir,
            "mixed.jsonl",
            "{\"text\": \"a\", \"label\": \"positive\"}\n\n{\"text\": \"b\", \"label\": 0}\n{\"text\": \"c\", \"label\": \"1\"}\n",
        );
        let labels: Vec<usize> = load(&path, shape)
            .unwrap()
            .iter()
            .map(|e| match e {
                Example::Classification { label, .. } => *label,
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(labels, [1, 0, 1]);
        // No label list: integers define the classes.
        let path = write_file(&dir, "ints.csv", "label,text\n7,\"seven, quoted\"\r\n");
        let open = TaskShape::Classification { labels: &[] };
        assert_eq!(
            load(&path, open).unwrap(),
            [Example::Classification {
                text: "seven, quoted".into(),
                label: 7
            }]
        );
        // Tags as integers map through the tag list.
        let path = write_file(
            &dir,
            "tags.jsonl",
            "{\"tokens\": [\"Anna\", \"runs\"], \"tags\": [1, \"O\"]}\n",
        );
        let tags = TaskShape::Tagging {
            tags: &["O", "B-PER"],
        };
        assert_eq!(
            load(&path, tags).unwrap(),
            [Example::Tagging {
                tokens: vec!["Anna".into(), "runs".into()],
                tags: vec!["B-PER".into(), "O".into()]
            }]
        );
    }

    #[test]
    fn csv_follows_rfc_4180() {
        let dir = temp_dir("rfc4180");
        let text = "prompt,response,extra\r\n\"line one\nline \"\"two\"\"\",\"a, b\",x\r\n\r\nplain,,\r\n\"last\",no newline,";
        let path = write_file(&dir, "gen.csv", text);
        let loaded = load(&path, TaskShape::Generation).unwrap();
        assert_eq!(
            loaded,
            [
                Example::Generation {
                    prompt: "line one\nline \"two\"".into(),
                    response: "a, b".into()
                },
                Example::Generation {
                    prompt: "plain".into(),
                    response: "".into()
                },
                Example::Generation {
                    prompt: "last".into(),
                    response: "no newline".into()
                },
            ]
        );
        // The record after a quoted line break is reported at its own line.
        let text = "text,label\n\"two\nlines\",0\nthird,9\n";
        let shape = TaskShape::Classification {
            labels: &SENTIMENT_LABELS,
        };
        assert_data_error(&dir, "lines.csv", text, shape, 4, &["\"label\"", "\"9\""]);
    }

    #[test]
    fn broken_files_name_file_line_and_field() {
        let dir = temp_dir("broken");
        let sentiment = TaskShape::Classification {
            labels: &SENTIMENT_LABELS,
        };
        let ner = TaskShape::Tagging {
            tags: &["O", "B-PER", "I-PER"],
        };
        let good = "{\"text\": \"fine\", \"label\": 1}\n";
        let cases: Vec<(&str, String, TaskShape, usize, Vec<&str>)> = vec![
            ("missing.jsonl", format!("{good}{{\"text\": \"no label\"}}\n"), sentiment, 2, vec!["\"label\"", "missing"]),
            ("type.jsonl", format!("{good}{good}{{\"text\": 5, \"label\": 0}}\n"), sentiment, 3, vec!["\"text\"", "expected a string", "a number"]),
            ("label_type.jsonl", "{\"text\": \"t\", \"label\": [1]}\n".into(), sentiment, 1, vec!["\"label\"", "an array"]),
            ("unknown.jsonl", format!("{good}{{\"text\": \"t\", \"label\": \"neutral\"}}\n"), sentiment, 2, vec!["\"label\"", "unknown label \"neutral\"", "negative, positive"]),
            ("range.jsonl", "{\"text\": \"t\", \"label\": 2}\n".into(), sentiment, 1, vec!["\"label\"", "\"2\""]),
            ("json.jsonl", format!("{good}{good}{good}{{\"text\": \"t\",\n"), sentiment, 4, vec!["invalid JSON"]),
            ("array.jsonl", "[1, 2]\n".into(), sentiment, 1, vec!["expected a JSON object"]),
            ("tags.jsonl", "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n".into(), ner, 1, vec!["\"tags\"", "1 tags for 2 tokens"]),
            ("badtag.jsonl", "{\"tokens\": [\"a\"], \"tags\": [\"B-LOC\"]}\n".into(), ner, 1, vec!["\"tags\"", "unknown tag \"B-LOC\""]),
            ("tokens.jsonl", "{\"tokens\": \"a b\", \"tags\": [\"O\"]}\n".into(), ner, 1, vec!["\"tokens\"", "expected an array"]),
            ("span.jsonl", "{\"context\": \"Anna lives in Lima.\", \"question\": \"Where?\", \"answer\": \"Oslo\"}\n".into(), TaskShape::Span, 1, vec!["\"answer\"", "not found in context"]),
            ("start.jsonl", "{\"context\": \"Anna lives in Lima.\", \"question\": \"Where?\", \"answer\": \"Lima\", \"answer_start\": 3}\n".into(), TaskShape::Span, 1, vec!["\"answer_start\"", "byte 3"]),
            ("start_type.jsonl", "{\"context\": \"Lima\", \"question\": \"Where?\", \"answer\": \"Lima\", \"answer_start\": -1}\n".into(), TaskShape::Span, 1, vec!["\"answer_start\"", "non-negative integer"]),
            ("start_huge.jsonl", format!("{{\"context\": \"Lima\", \"question\": \"Where?\", \"answer\": \"Lima\", \"answer_start\": {}}}\n", u64::MAX), TaskShape::Span, 1, vec!["\"answer_start\""]),
            ("response.jsonl", "{\"prompt\": \"p\", \"response\": null}\n".into(), TaskShape::Generation, 1, vec!["\"response\"", "null"]),
            ("quote.csv", "text,label\nfine,0\n\"never closed,1\nmore,0\n".into(), sentiment, 3, vec!["\"text\"", "unterminated quote"]),
            ("stray.csv", "text,label\nfine,0\nfi\"ne,1\n".into(), sentiment, 3, vec!["\"text\"", "quote inside an unquoted field"]),
            ("after.csv", "text,label\n\"fine\"x,1\n".into(), sentiment, 2, vec!["\"text\"", "after a closing quote"]),
            ("header.csv", "text,lbl\nfine,0\n".into(), sentiment, 1, vec!["\"label\"", "missing column", "text, lbl"]),
            ("count.csv", "text,label\nfine,0\ntoo,many,fields\n".into(), sentiment, 3, vec!["expected 2 fields", "found 3"]),
            ("unknown.csv", "text,label\nfine,neutral\n".into(), sentiment, 2, vec!["\"label\"", "unknown label \"neutral\""]),
            ("start.csv", "context,question,answer,answer_start\nAnna lives in Lima.,Where?,Lima,x\n".into(), TaskShape::Span, 2, vec!["\"answer_start\"", "\"x\""]),
            ("tags.csv", "tokens,tags\nAnna Lee runs,B-PER I-PER\n".into(), ner, 2, vec!["\"tags\"", "2 tags for 3 tokens"]),
            ("empty.csv", "".into(), sentiment, 0, vec!["empty file"]),
            ("data.txt", "text,label\n".into(), sentiment, 0, vec!["extension"]),
        ];
        for (name, text, shape, line, words) in cases {
            assert_data_error(&dir, name, &text, shape, line, &words);
        }
    }

    #[test]
    fn truncated_files_never_panic() {
        let world = World::generate(4);
        let sizes = Sizes {
            train: 6,
            validation: 1,
            test: 1,
        };
        let dir = temp_dir("truncated");
        for task in [Task::Qa, Task::Dialogue, Task::Ner, Task::Sentiment] {
            let examples = build_with(task, &world, 1, sizes).train;
            for ext in ["jsonl", "csv"] {
                let path = dir.join(format!("{}.{ext}", task.name()));
                match ext {
                    "jsonl" => save_jsonl(&path, &examples, task.shape()).unwrap(),
                    _ => save_csv(&path, &examples, task.shape()).unwrap(),
                }
                let text = std::fs::read_to_string(&path).unwrap();
                for cut in (0..text.len()).filter(|&i| text.is_char_boundary(i)) {
                    let records = match ext {
                        "jsonl" => jsonl_records(&text[..cut]),
                        _ => csv_records(&text[..cut], required_fields(task.shape())),
                    };
                    for r in records.unwrap_or_default() {
                        let _ = example(&r, task.shape());
                    }
                }
            }
        }
    }

    #[test]
    fn unreadable_files_are_io_errors_naming_the_path() {
        let dir = temp_dir("io");
        let path = dir.join("absent.jsonl");
        let err = load(&path, TaskShape::Generation).expect_err("absent file");
        assert!(matches!(err, Error::Io { .. }));
        assert!(err.to_string().contains("absent.jsonl"), "{err}");
        let bytes = dir.join("latin1.csv");
        std::fs::write(&bytes, b"text,label\ncaf\xe9,0\n").unwrap();
        let err = load(&bytes, TaskShape::Generation).expect_err("not UTF-8");
        assert!(err.to_string().contains("latin1.csv"), "{err}");
        // Saving an example of the wrong shape is refused, not written.
        let ex = [Example::Generation {
            prompt: "p".into(),
            response: "r".into(),
        }];
        assert!(save_jsonl(&dir.join("x.jsonl"), &ex, TaskShape::Span).is_err());
    }
}
