//! The notes' own questions: what fine-tuning buys (1), the methods compared (2), the two
//! losses (3), and when to keep the base frozen (5). Question 4 runs the overfit pitfall.

use crate::data::batch::{pad, PadSide};
use crate::data::encode::{encode, Target};
use crate::data::tasks::{Example, Task};
use crate::error::Result;
use crate::lab::compare::{self, CompareOptions, Row};
use crate::lab::evidence::{num, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::{load_base, task_data};
use crate::lab::forgetting::heldout_batches;
use crate::lab::runs::{temp_dir, train_run, Run, BASE};
use crate::loss::{
    causal_lm_loss, causal_lm_loss_sum, classification_loss, instruction_labels, lm_labels,
};
use crate::nn::heads::{Pooling, SequenceHead};
use crate::nn::{Input, NoHooks};
use crate::peft::lora::LoraConfig;
use crate::peft::prompt::PromptInit;
use crate::peft::MethodSpec;
use crate::train::progress::Progress;
use crate::train::trainer::Split;
use crate::{Float, Tape};
use serde::Serialize;

// ---------------------------------------------------------------------------------------------
// 1. Pre-trained versus from scratch

#[derive(Debug, Clone, Serialize)]
pub struct Scratch {
    pub steps: usize,
    pub batch: usize,
    pub train_examples: usize,
    pub pretrained_accuracy: f64,
    pub scratch_accuracy: f64,
    pub pretrained_val_loss: f64,
    pub scratch_val_loss: f64,
}

pub fn scratch(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Scratch> {
    let (steps, batch, n, val) = (mode.pick(16, 100), 16, 512, mode.pick(64, 300));
    let mut run = Run::new(
        Task::Sentiment,
        MethodSpec::Full { last_k: None },
        5e-4,
        steps,
        batch,
    )
    .seed(seed);
    run.train_limit = Some(n);
    let pre =
        train_run(&run, "the pre-trained base", progress)?.evaluate(Split::Validation, val)?;
    run.from_scratch = true;
    let fresh = train_run(&run, "the same architecture from random weights", progress)?
        .evaluate(Split::Validation, val)?;
    Ok(Scratch {
        steps,
        batch,
        train_examples: n,
        pretrained_accuracy: pre["accuracy"],
        scratch_accuracy: fresh["accuracy"],
        pretrained_val_loss: pre["loss"],
        scratch_val_loss: fresh["loss"],
    })
}

impl Evidence for Scratch {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment, {} training examples, full fine-tuning for {} steps of batch {} at lr 5e-4\n\n",
            self.train_examples, self.steps, self.batch
        );
        s.push_str(&table(
            &["start from", "val accuracy", "val loss"],
            &[
                vec![
                    "pre-trained gpt-tiny".into(),
                    num(self.pretrained_accuracy, 3),
                    num(self.pretrained_val_loss, 4),
                ],
                vec![
                    "random weights".into(),
                    num(self.scratch_accuracy, 3),
                    num(self.scratch_val_loss, 4),
                ],
            ],
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        vec![
            Claim::new(
                "the pre-trained base scores higher than random weights on the same data and budget",
                self.pretrained_accuracy > self.scratch_accuracy,
            )
            .measured(
                "pre-trained − scratch val accuracy",
                self.pretrained_accuracy - self.scratch_accuracy,
                Fmt::Signed(3),
            ),
            Claim::new(
                "... and ends at a lower validation loss",
                self.pretrained_val_loss < self.scratch_val_loss,
            )
            .measured(
                "scratch − pre-trained val loss",
                self.scratch_val_loss - self.pretrained_val_loss,
                Fmt::Signed(4),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 2. The methods compared

#[derive(Debug, Clone, Serialize)]
pub struct Methods {
    pub table: String,
    pub rows: Vec<Row>,
}

pub fn methods(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Methods> {
    let b = load_base(BASE)?;
    let init = crate::lab::compare::prompt_init(&b.tok)?;
    let only = match mode {
        // Quick: the three the claims compare (the tests run it on three seeds).
        Mode::Quick => ["full", "lora", "prompt"].map(String::from).to_vec(),
        Mode::Full => vec![],
    };
    let mut opts = CompareOptions::new(BASE, Task::Sentiment);
    opts.steps = mode.pick(6, 60);
    opts.batch_size = mode.pick(8, 16);
    opts.low_data = None;
    opts.max_eval_examples = mode.pick(32, 200);
    if mode == Mode::Quick {
        opts.heldout_batches = 1; // as `compare --quick`
    }
    opts.only = only;
    opts.seed = seed;
    // One seed per run: the seeds of the claims are this experiment's own (`over_seeds`), and
    // the step times come from the scored runs (no separate timing pass).
    opts.seeds = 1;
    opts.timing_steps = 0;
    progress.line(&format!(
        "tunelab compare: every method for {} steps of batch {}",
        opts.steps, opts.batch_size
    ));
    let rows = compare::compare(&opts, &compare::default_entries(opts.task, init)?, &mut ())?;
    Ok(Methods {
        table: compare::table(&opts, &rows),
        rows,
    })
}

impl Methods {
    pub fn row(&self, spec_name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.method.starts_with(spec_name))
    }
}

impl Evidence for Methods {
    fn render(&self) -> String {
        self.table.clone()
    }

    fn claims(&self) -> Vec<Claim> {
        let mut c = Vec::new();
        if let (Some(full), Some(lora)) = (self.row("full"), self.row("lora")) {
            c.push(
                Claim::new(
                    "full fine-tuning trains every weight",
                    full.trainable_params == full.total_params,
                )
                .measured(
                    "full's trainable share",
                    full.trainable_pct / 100.0,
                    Fmt::Percent(1),
                ),
            );
            c.push(
                Claim::new(
                    "LoRA trains under 5% of the weights",
                    lora.trainable_pct < 5.0,
                )
                .measured(
                    "LoRA's trainable share",
                    lora.trainable_pct / 100.0,
                    Fmt::Percent(2),
                ),
            );
            c.push(
                Claim::new(
                    "a LoRA step is faster than a full fine-tuning step",
                    lora.median_step_ms < full.median_step_ms,
                )
                .measured(
                    "LoRA / full median step time",
                    lora.median_step_ms / full.median_step_ms,
                    Fmt::Times(2),
                ),
            );
            // Strictly higher: a tie on a few dozen test examples is no evidence either way.
            c.push(
                Claim::new(
                    "full fine-tuning scores higher than LoRA on test",
                    full.test_score > lora.test_score,
                )
                .measured(
                    "full − LoRA test score",
                    full.test_score - lora.test_score,
                    Fmt::Signed(3),
                ),
            );
        }
        if let Some(p) = self.row("prompt") {
            let fewest = self
                .rows
                .iter()
                .all(|r| r.trainable_params >= p.trainable_params);
            c.push(
                Claim::new("prompt tuning trains the fewest weights", fewest).measured(
                    "prompt tuning's trainable parameters",
                    p.trainable_params as f64,
                    Fmt::Fixed(0),
                ),
            );
            if let Some(full) = self.row("full") {
                c.push(
                    Claim::new(
                        "prompt tuning scores lower than full fine-tuning on test",
                        p.test_score < full.test_score,
                    )
                    .measured(
                        "full − prompt test score",
                        full.test_score - p.test_score,
                        Fmt::Signed(3),
                    ),
                );
            }
        }
        c
    }
}

// ---------------------------------------------------------------------------------------------
// 3. LM loss versus classification loss

#[derive(Debug, Clone, Serialize)]
pub struct Losses {
    /// Classification: sequences in the batch, targets counted, the batch loss, each
    /// sequence's own loss.
    pub cls_sequences: usize,
    pub cls_targets: usize,
    pub cls_loss: f64,
    pub cls_per_sequence: Vec<f64>,
    /// Causal LM on instruction data: real tokens per sequence and prompt tokens per sequence.
    pub lm_lengths: Vec<usize>,
    pub lm_prompt_lens: Vec<usize>,
    /// Targets counted without and with the prompt masked.
    pub lm_targets_all: usize,
    pub lm_targets_response: usize,
    /// Per-token mean loss without and with the prompt masked.
    pub lm_loss_all: f64,
    pub lm_loss_response: f64,
    /// The notes' summed loss S = -Σ log P over the response tokens, and S / M.
    pub lm_sum_response: f64,
}

pub fn losses() -> Result<Losses> {
    let mut base = load_base(BASE)?;
    let pad_id = base.tok.pad_id().unwrap_or(0);

    // Classification: a sentiment head on the pooled last token.
    let (data, _) = task_data(Task::Sentiment, None, Some(4))?;
    let head = SequenceHead::new(&mut base.store, &base.model, 2, Pooling::LastToken, 42)?;
    let mut seqs = Vec::new();
    let mut labels = Vec::new();
    for e in &data.train {
        let enc = encode(&base.tok, e, &[], base.model.config.max_len)?;
        if let Target::Class(c) = enc.target {
            labels.push(c);
        }
        seqs.push(enc.ids);
    }
    let cls = |seqs: &[Vec<u32>], labels: &[usize]| -> Result<f64> {
        let b = pad(seqs, pad_id, PadSide::Right, None)?;
        let mut tape = Tape::inference(&base.store);
        let input = Input::new(b.ids.view())
            .with_mask(b.attention_mask.view())
            .with_positions(b.positions.view());
        let h = base.model.forward(&mut tape, &NoHooks, &input)?;
        let logits = head.forward(
            &mut tape,
            &NoHooks,
            &base.model,
            h,
            Some(b.attention_mask.view()),
        )?;
        let loss = classification_loss(&mut tape, logits, labels)?;
        Ok(tape.scalar(loss)?.as_f64())
    };
    let cls_loss = cls(&seqs, &labels)?;
    let cls_per_sequence = seqs
        .iter()
        .zip(&labels)
        .map(|(s, &l)| cls(std::slice::from_ref(s), &[l]))
        .collect::<Result<Vec<_>>>()?;

    // Causal LM on dialogue examples: prompt, then response and the end token.
    let (data, _) = task_data(Task::Dialogue, None, Some(4))?;
    let eos = base.tok.eos_id().unwrap_or(0);
    let (mut seqs, mut prompt_lens) = (Vec::new(), Vec::new());
    for e in &data.train {
        if let Example::Generation { prompt, response } = e {
            let mut ids = base.tok.encode(prompt, false)?;
            prompt_lens.push(ids.len());
            ids.extend(base.tok.encode(&format!(" {response}"), false)?);
            ids.push(eos);
            seqs.push(ids);
        }
    }
    let b = pad(&seqs, pad_id, PadSide::Right, None)?;
    let all = lm_labels(b.ids.view(), Some(b.attention_mask.view()))?;
    let resp = instruction_labels(b.ids.view(), Some(b.attention_mask.view()), &prompt_lens)?;
    let mut tape = Tape::inference(&base.store);
    let input = Input::new(b.ids.view())
        .with_mask(b.attention_mask.view())
        .with_positions(b.positions.view());
    let h = base.model.forward(&mut tape, &NoHooks, &input)?;
    let logits = base.model.lm_logits(&mut tape, &NoHooks, h)?;
    let l_all = causal_lm_loss(&mut tape, logits, all.view())?;
    let l_resp = causal_lm_loss(&mut tape, logits, resp.view())?;
    let (_, m_all) = causal_lm_loss_sum(&mut tape, logits, all.view())?;
    let (s_resp, m_resp) = causal_lm_loss_sum(&mut tape, logits, resp.view())?;
    Ok(Losses {
        cls_sequences: labels.len(),
        cls_targets: labels.len(),
        cls_loss,
        cls_per_sequence,
        lm_lengths: seqs.iter().map(Vec::len).collect(),
        lm_prompt_lens: prompt_lens,
        lm_targets_all: m_all,
        lm_targets_response: m_resp,
        lm_loss_all: tape.scalar(l_all)?.as_f64(),
        lm_loss_response: tape.scalar(l_resp)?.as_f64(),
        lm_sum_response: tape.scalar(s_resp)?.as_f64(),
    })
}

impl Losses {
    /// The mean of the per-sequence classification losses.
    pub fn cls_mean_of_sequences(&self) -> f64 {
        self.cls_per_sequence.iter().sum::<f64>() / self.cls_per_sequence.len().max(1) as f64
    }
}

impl Evidence for Losses {
    fn render(&self) -> String {
        let mut s =
            String::from("one batch through gpt-tiny (untrained head for classification)\n\n");
        s.push_str(&format!(
            "classification (sentiment, {} sequences): {} targets, one per sequence; batch loss {} = mean of the sequences' losses [{}]\n\n",
            self.cls_sequences,
            self.cls_targets,
            num(self.cls_loss, 4),
            self.cls_per_sequence
                .iter()
                .map(|x| num(*x, 4))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        s.push_str(&format!(
            "causal LM (dialogue, {} sequences of {:?} tokens, prompts of {:?}):\n",
            self.lm_lengths.len(),
            self.lm_lengths,
            self.lm_prompt_lens
        ));
        s.push_str(&table(
            &["labels", "targets (tokens)", "mean loss per token"],
            &[
                vec![
                    "every next token".into(),
                    self.lm_targets_all.to_string(),
                    num(self.lm_loss_all, 4),
                ],
                vec![
                    "response only (prompt = -100)".into(),
                    self.lm_targets_response.to_string(),
                    num(self.lm_loss_response, 4),
                ],
            ],
        ));
        s.push_str(&format!(
            "the notes' summed loss over the response tokens S = {}; S / M = {}\n",
            num(self.lm_sum_response, 3),
            num(self.lm_sum_response / self.lm_targets_response as f64, 4)
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let expected_all: usize = self.lm_lengths.iter().map(|n| n - 1).sum();
        let expected_resp: usize = self
            .lm_lengths
            .iter()
            .zip(&self.lm_prompt_lens)
            .map(|(n, p)| n - p)
            .sum();
        vec![
            Claim::new(
                "classification counts one target per sequence and its loss is the mean over sequences",
                self.cls_targets == self.cls_sequences
                    && (self.cls_loss - self.cls_mean_of_sequences()).abs() < 1e-4,
            ),
            Claim::new(
                format!(
                    "the LM loss counts one target per next token ({} = Σ (length - 1))",
                    self.lm_targets_all
                ),
                self.lm_targets_all == expected_all,
            ),
            Claim::new(
                format!(
                    "masking the prompt leaves only the response's tokens ({} of {})",
                    self.lm_targets_response, self.lm_targets_all
                ),
                self.lm_targets_response == expected_resp,
            ),
            Claim::new(
                "the per-token mean is the summed loss divided by the tokens counted",
                (self.lm_sum_response / self.lm_targets_response as f64 - self.lm_loss_response).abs()
                    < 1e-4,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 5. When to keep the base frozen

#[derive(Debug, Clone, Serialize)]
pub struct FrozenRow {
    pub label: String,
    pub trainable: usize,
    pub adapter_bytes: u64,
    pub val_accuracy: f64,
    /// Held-out LM loss change with the method attached.
    pub forgetting: f64,
    /// The same with the method's hooks detached (the base weights alone).
    pub forgetting_detached: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Frozen {
    pub train_examples: usize,
    pub steps: usize,
    pub base_bytes: u64,
    pub tasks: u64,
    /// Full fine-tuning, LoRA, prompt tuning.
    pub rows: Vec<FrozenRow>,
}

pub fn frozen(mode: Mode, seed: u64, progress: &mut dyn Progress) -> Result<Frozen> {
    let (n, steps, val) = (mode.pick(32, 64), mode.pick(6, 100), mode.pick(32, 300));
    let b = load_base(BASE)?;
    let base_bytes = std::fs::metadata(b.dir.join("model.safetensors"))
        .map(|m| m.len())
        .unwrap_or(0);
    let init = crate::lab::compare::prompt_init(&b.tok)?;
    // Quick mode scores forgetting on one batch of held-out text, as `compare --quick` does.
    let mut heldout = heldout_batches(&b)?;
    heldout.truncate(mode.pick(1, 4));
    let mut rows = Vec::new();
    for (label, spec, lr) in [
        ("full fine-tuning", MethodSpec::Full { last_k: None }, 5e-4),
        (
            "LoRA r=8 q,v",
            MethodSpec::Lora(LoraConfig::default()),
            3e-3,
        ),
        (
            "prompt tuning P=10",
            MethodSpec::Prompt {
                n_virtual: 10,
                init: PromptInit::Vocab(init.clone()),
            },
            1e-2,
        ),
    ] {
        let mut run = Run::new(Task::Sentiment, spec.clone(), lr, steps, 8).seed(seed);
        run.train_limit = Some(n);
        let mut o = train_run(&run, label, progress)?;
        let val_accuracy = o.evaluate(Split::Validation, val)?["accuracy"];
        let f = o.forgetting(&heldout)?;
        let detached =
            crate::lab::forgetting::heldout_loss(&o.base, &NoHooks, &heldout)? - f.before;
        let dir = temp_dir("adapter");
        let head = o.tm.head.params();
        crate::peft::store::save_adapter(
            &dir,
            &spec,
            o.method.as_mut(),
            &mut o.base.store,
            &head,
            serde_json::Value::Null,
        )?;
        let adapter_bytes = crate::io::adapter::file_size(&dir)?;
        let _ = std::fs::remove_dir_all(&dir);
        rows.push(FrozenRow {
            label: label.into(),
            trainable: o.trainable,
            adapter_bytes,
            val_accuracy,
            forgetting: f.delta(),
            forgetting_detached: detached,
        });
    }
    Ok(Frozen {
        train_examples: n,
        steps,
        base_bytes,
        tasks: 10,
        rows,
    })
}

impl Frozen {
    /// Bytes on disk for `tasks` tasks: full fine-tuning keeps a whole model per task; the others
    /// keep one base and a small file per task.
    pub fn storage(&self, row: &FrozenRow) -> u64 {
        if row.label.starts_with("full") {
            self.tasks * row.adapter_bytes
        } else {
            self.base_bytes + self.tasks * row.adapter_bytes
        }
    }
}

impl Evidence for Frozen {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment with only {} training examples, {} steps of batch 8; gpt-tiny's weights file is {} bytes\n\n",
            self.train_examples, self.steps, self.base_bytes
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    r.label.clone(),
                    r.trainable.to_string(),
                    r.adapter_bytes.to_string(),
                    self.storage(r).to_string(),
                    num(r.val_accuracy, 3),
                    format!("{:+.4}", r.forgetting),
                    format!("{:+.4}", r.forgetting_detached),
                ]
            })
            .collect();
        let header = format!("bytes for {} tasks", self.tasks);
        s.push_str(&table(
            &[
                "method",
                "trainable",
                "file per task (bytes)",
                &header,
                "val acc",
                "forgetting",
                "forgetting, detached",
            ],
            &rows,
        ));
        s.push_str(
            "forgetting: held-out LM loss after minus before, method attached; detached: the base weights alone\n",
        );
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (full, lora, prompt) = (&self.rows[0], &self.rows[1], &self.rows[2]);
        vec![
            Claim::new(
                "a LoRA file is under 5% of a fully fine-tuned copy",
                (lora.adapter_bytes as f64) < 0.05 * full.adapter_bytes as f64,
            )
            .measured(
                "LoRA file / full copy",
                lora.adapter_bytes as f64 / full.adapter_bytes as f64,
                Fmt::Percent(2),
            ),
            Claim::new(
                format!(
                    "{} tasks on one frozen base take less storage than {} full copies",
                    self.tasks, self.tasks
                ),
                self.storage(lora) < self.storage(full) && self.storage(prompt) < self.storage(full),
            )
            .measured(
                "LoRA's storage / full copies'",
                self.storage(lora) as f64 / self.storage(full) as f64,
                Fmt::Percent(1),
            ),
            Claim::new(
                "LoRA forgets less than full fine-tuning",
                lora.forgetting < full.forgetting,
            )
            .measured(
                "full − LoRA forgetting (nats)",
                full.forgetting - lora.forgetting,
                Fmt::Signed(4),
            ),
            Claim::new(
                "prompt tuning, prompt attached, forgets less than full fine-tuning",
                prompt.forgetting < full.forgetting,
            )
            .measured(
                "full − prompt forgetting (nats)",
                full.forgetting - prompt.forgetting,
                Fmt::Signed(4),
            ),
            Claim::new(
                "detached, the frozen-base methods give back the pre-trained model exactly (forgetting 0)",
                lora.forgetting_detached == 0.0 && prompt.forgetting_detached == 0.0,
            )
            .measured(
                "largest |forgetting, detached|",
                lora.forgetting_detached.abs().max(prompt.forgetting_detached.abs()),
                Fmt::Sci(1),
            ),
            // Strictly higher: with few validation examples a tie says nothing.
            Claim::new(
                "with little data LoRA scores higher than full fine-tuning",
                lora.val_accuracy > full.val_accuracy,
            )
            .measured(
                "LoRA − full val accuracy",
                lora.val_accuracy - full.val_accuracy,
                Fmt::Signed(3),
            ),
            Claim::new(
                "with little data prompt tuning scores higher than full fine-tuning",
                prompt.val_accuracy > full.val_accuracy,
            )
            .measured(
                "prompt − full val accuracy",
                prompt.val_accuracy - full.val_accuracy,
                Fmt::Signed(3),
            ),
        ]
    }
}

/// Questions 1–5 in Vietnamese (`tunelab interview N --lang vi`): (number, question, answer), in
/// the notes' own wording where section 9 of the notes has it.
pub const VI: &[(usize, &str, &str)] = &[
    (1, "Fine-tuning là gì? Tại sao cần fine-tuning LLM thay vì train một mô hình từ đầu?",
     "Fine-tuning là tiếp tục train một mô hình đã được pre-trained trên dữ liệu của một task, bắt đầu từ chính các weights của nó (thêm một head mới nếu task cần). Pre-training trên một tập dữ liệu lớn đã dạy mô hình ngôn ngữ và kiến thức chung; khi đó một dataset nhỏ của task đủ để dạy task, điều mà nó không bao giờ dạy được cho một mô hình bắt đầu từ weights ngẫu nhiên. Chi phí chỉ bằng một phần rất nhỏ của pre-training."),
    (2, "So sánh full fine-tuning, adapter, LoRA và prompt tuning.",
     "Full fine-tuning cập nhật tất cả weights: thường cho điểm cao nhất, nhưng mỗi task cần một bản sao đầy đủ, optimizer state cho mọi weight, và quên nhiều nhất. Adapter chèn các layer bottleneck nhỏ và chỉ train chúng; LoRA thêm một cập nhật rank thấp B·A bên cạnh các weight matrices được chọn và có thể merge vào khi serve; prompt tuning học vài input embeddings và không chạm vào bên trong mô hình. Các phương pháp parameter-efficient train dưới 5% số weights, mỗi task lưu vài megabyte thay vì vài gigabyte, và mỗi step nhanh hơn vì weights frozen không cần gradient; trên mô hình lớn chúng có thể thua full fine-tuning về điểm, prompt tuning thua nhiều nhất. Ở quy mô của gpt-tiny thứ hạng đó không đo được: chấm trên 32 đến 200 ví dụ test (sai số chuẩn nhị thức 3 đến 9 điểm), full fine-tuning không cao hơn LoRA trên phần lớn các seed và prompt tuning cũng không chắc chắn thấp hơn; các kết luận đếm số seed. Điều các phương pháp parameter-efficient chắc chắn mang lại ở đây là số parameters, dung lượng lưu trữ và thời gian mỗi step."),
    (3, "Loss function khi fine-tune LM khác classification như thế nào?",
     "Classification đặt một head lên hidden state đã pool và lấy cross-entropy với một nhãn cho mỗi chuỗi, lấy trung bình trên N chuỗi. Fine-tuning causal LM lấy cross-entropy ở mọi vị trí với token tiếp theo, L = -Σ_t log P(y_t | y_<t, X), nên mỗi chuỗi đóng góp bao nhiêu số hạng là tùy số target tokens của nó; các trainer lấy trung bình trên target tokens. Trong instruction tuning các token của prompt bị mask (nhãn -100), nên mô hình chỉ học phần response."),
    (4, "Làm sao tránh overfitting khi dataset nhỏ?",
     "Theo dõi một tập validation: khi training loss tiếp tục giảm trong khi validation loss tăng lên, mô hình đang học thuộc lòng. Cách phòng lần nào cũng hiệu quả là dừng sớm (early stopping) tại validation loss tốt nhất (và giữ checkpoint đó). Các cách khác trong sách giáo khoa là regularization (weight decay, dropout), train ít parameters hơn (LoRA, adapter), learning rate thấp hơn hoặc ít epoch hơn, và thêm hoặc augment dữ liệu; hãy đo chúng thay vì tin. Với 8 đến 32 ví dụ ở đây chúng không ngăn được việc học thuộc lòng: weight decay 0.1 chỉ làm mỗi weight nhỏ đi lr × 0.1 mỗi step và làm validation loss cuối cùng thấp hơn rõ rệt ở một số seed, không phải tất cả; dropout 0.1 kết thúc cao hơn ở mọi seed; LoRA với learning rate thông thường học thuộc vài chục ví dụ nhanh gần bằng full fine-tuning, thấp hơn ở vài seed và cao hơn ở các seed khác. Với ít dữ liệu như vậy, chỉ có thêm dữ liệu và dừng sớm mới thật sự giúp."),
    (5, "Khi nào nên giữ model frozen và chỉ fine-tune prefix/adapters?",
     "Khi serve nhiều task từ một base (mỗi task là một file nhỏ, base dùng chung), khi thiếu bộ nhớ (không có gradient hay optimizer state cho base), khi mô hình phải giữ khả năng chung (base frozen quên ít hơn), và khi dữ liệu khan hiếm (ít parameters để fit). Ở đây, trên 32 ví dụ, các phương pháp giữ base frozen quên ít hơn full fine-tuning ở mọi seed và điểm cao hơn nó ở phần lớn các seed nhưng không phải tất cả: vài chục ví dụ validation không đủ để xếp hạng chúng một cách chắc chắn. Full fine-tuning đáng dùng khi một task quan trọng nhất, dữ liệu dồi dào và task khác xa pre-training."),
];
