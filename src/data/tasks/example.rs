//! What a task is and what its examples look like: the six [`Task`]s, the [`Example`] shapes their
//! generators return, and the label names of the two labelled tasks.

use crate::error::{Error, Result};

/// Sentiment class names, by label index.
pub const SENTIMENT_LABELS: [&str; 2] = ["negative", "positive"];
/// BIO tags over persons, places, organisations and foods, by tag index.
pub const NER_TAGS: [&str; 9] = [
    "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-FOOD", "I-FOOD",
];

/// The six tasks; `--task` takes the names (and aliases) below, in any case.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Task {
    /// Text classification: the sentiment of a review.
    #[value(alias = "classification")]
    Sentiment,
    /// Token classification: BIO tags over persons, places, organisations and foods.
    Ner,
    /// Extractive question answering: an answer span in a context.
    Qa,
    /// A one-sentence summary of a short article.
    #[value(alias = "summarisation")]
    Summarization,
    /// A response to a user's turn.
    #[value(aliases = ["dialog", "chat"])]
    Dialogue,
    /// Code-like generation: a tiny program for a request, scored by the value it computes.
    #[value(alias = "code")]
    Codegen,
}

impl Task {
    pub fn all() -> [Task; 6] {
        [
            Task::Sentiment,
            Task::Ner,
            Task::Qa,
            Task::Summarization,
            Task::Dialogue,
            Task::Codegen,
        ]
    }

    /// The name used on the command line and in file names.
    pub fn name(self) -> &'static str {
        match self {
            Task::Sentiment => "sentiment",
            Task::Ner => "ner",
            Task::Qa => "qa",
            Task::Summarization => "summarization",
            Task::Dialogue => "dialogue",
            Task::Codegen => "codegen",
        }
    }

    /// Parses a task name (case-insensitive; a few common aliases such as `classification`,
    /// `summarisation`, `chat` and `code` are accepted).
    pub fn from_name(name: &str) -> Result<Task> {
        <Task as clap::ValueEnum>::from_str(name.trim(), true).map_err(|_| {
            let names: Vec<&str> = Task::all().iter().map(|t| t.name()).collect();
            Error::Invalid {
                op: "task",
                detail: format!(
                    "unknown task {name:?}, expected one of {}",
                    names.join(", ")
                ),
            }
        })
    }

    /// Class names (sentiment) or tags (NER), by index; empty for the other tasks.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Task::Sentiment => &SENTIMENT_LABELS,
            Task::Ner => &NER_TAGS,
            _ => &[],
        }
    }

    /// The shape of this task's examples, as the loaders expect it.
    pub fn shape(self) -> TaskShape<'static> {
        match self {
            Task::Sentiment => TaskShape::Classification {
                labels: &SENTIMENT_LABELS,
            },
            Task::Ner => TaskShape::Tagging { tags: &NER_TAGS },
            Task::Qa => TaskShape::Span,
            Task::Summarization | Task::Dialogue | Task::Codegen => TaskShape::Generation,
        }
    }
}

/// Which fields an example has, and the label names that give its integer labels a meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskShape<'a> {
    /// `text`, `label`. `labels[i]` names label `i`; empty means "integer labels only".
    Classification { labels: &'a [&'a str] },
    /// `tokens`, `tags`. `tags` lists the allowed tags; empty means "any tag string".
    Tagging { tags: &'a [&'a str] },
    /// `context`, `question`, `answer` (and the answer's byte offset in the context).
    Span,
    /// `prompt`, `response`.
    Generation,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Example {
    Classification {
        text: String,
        label: usize,
    },
    Tagging {
        tokens: Vec<String>,
        tags: Vec<String>,
    },
    Span {
        context: String,
        question: String,
        answer: String,
        /// Byte offset of `answer` in `context`.
        answer_start: usize,
    },
    Generation {
        prompt: String,
        response: String,
    },
}

impl Example {
    /// What the model reads: the key that makes two examples "the same" for de-duplication.
    pub fn input_text(&self) -> String {
        match self {
            Example::Classification { text, .. } => text.clone(),
            Example::Tagging { tokens, .. } => tokens.join(" "),
            Example::Span {
                context, question, ..
            } => format!("{context}\n{question}"),
            Example::Generation { prompt, .. } => prompt.clone(),
        }
    }

    /// "classification", "tagging", "span" or "generation", for error messages.
    pub fn shape_name(&self) -> &'static str {
        match self {
            Example::Classification { .. } => "classification",
            Example::Tagging { .. } => "tagging",
            Example::Span { .. } => "span",
            Example::Generation { .. } => "generation",
        }
    }
}
