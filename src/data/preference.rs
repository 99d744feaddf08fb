//! Preference data: prompts with a chosen and a rejected response (DPO and its family, the
//! reward model), and unpaired completions labelled desirable or not (KTO).
//!
//! Every response is read as `prompt + " " + response`, as generation examples are
//! ([`super::tasks::Example::Generation`]): the prompt ends with its label (`Answer:`,
//! `Assistant:`, `Code:`) and the response does not start with a space.

/// One preference pair, TRL's `{prompt, chosen, rejected}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PreferencePair {
    pub prompt: String,
    pub chosen: String,
    pub rejected: String,
}

/// One unpaired example, TRL's `{prompt, completion, label}` for KTO: `label` true when the
/// completion is desirable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KtoExample {
    pub prompt: String,
    pub completion: String,
    pub label: bool,
}

impl PreferencePair {
    /// The pair as KTO's two unpaired examples, as TRL's `unpair_preference_dataset` does: the
    /// chosen response desirable, the rejected one not.
    pub fn unpaired(&self) -> [KtoExample; 2] {
        [
            KtoExample {
                prompt: self.prompt.clone(),
                completion: self.chosen.clone(),
                label: true,
            },
            KtoExample {
                prompt: self.prompt.clone(),
                completion: self.rejected.clone(),
                label: false,
            },
        ]
    }
}

/// Train, validation and test pairs.
#[derive(Clone, Debug, Default)]
pub struct PreferenceSplits {
    pub train: Vec<PreferencePair>,
    pub validation: Vec<PreferencePair>,
    pub test: Vec<PreferencePair>,
}
