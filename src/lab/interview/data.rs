//! Knowledge, data and forgetting: fine-tuning against retrieval for facts (31), the KV cache
//! (32), chat templates, the end token and packing (33), noisy labels (34) and replaying
//! pre-training data against forgetting (35).
//!
//! The library pieces they rest on live where they belong: BM25 in [`crate::data::retrieval`],
//! packing in [`crate::data::packing`] with the document mask of
//! [`crate::autodiff::AttnMask::documents`], replay in [`crate::train::replay`], label smoothing
//! in [`crate::train::task::TaskModel::label_smoothing`].

use crate::autodiff::{Tape, IGNORE_INDEX};
use crate::data::encode::{encode, Target};
use crate::data::lm::{windows, CORPUS_SEED, WORLD_SEED};
use crate::data::packing::{pack, padded_pad_share};
use crate::data::retrieval::Bm25;
use crate::data::tasks::{Example, Task};
use crate::data::text::{fact_sentence, question, Fact, Mention};
use crate::data::world::{Partition, World};
use crate::error::Result;
use crate::kernels;
use crate::lab::evidence::{num, seed_list, table, Claim, Evidence, Fmt, Mode};
use crate::lab::finetune::{load_base, prepare, resolve_base, Base};
use crate::lab::forgetting::HeldOut;
use crate::lab::lanes::{lanes, side_by_side};
use crate::lab::runs::{prepare_run, temp_dir, train_run, Recorder, Run, BASE};
use crate::lab::stats::{self, IntervalKind};
use crate::metrics;
use crate::nn::generate::{generate, generate_uncached, GenerateOptions};
use crate::nn::kv_cache::KvCache;
use crate::nn::{Hooks, Input, Transformer};
use crate::peft::{Method, MethodSpec};
use crate::train::progress::Progress;
use crate::train::replay::Replay;
use crate::train::task::{GenMetric, Item, TaskData, TaskModel};
use crate::train::trainer::{self, Split, Training};
use crate::train::TrainingArgs;
use crate::ParamStore;
use ndarray::{Array2, ArrayView3};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use std::time::Instant;

/// Mean ± the 95% interval over seeds (Student-t), or the one value.
fn ci(xs: &[f64], d: usize) -> String {
    stats::t_interval(xs, IntervalKind::TOverSeeds).short(d)
}

fn mean(xs: &[f64]) -> f64 {
    stats::mean(xs)
}

/// `a − b` paired by seed, with its interval and verdict.
fn paired(a: &[f64], b: &[f64]) -> stats::Paired {
    stats::paired_t("baseline", a, b)
}

fn seeds_text(seeds: &[u64]) -> String {
    seeds
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Trains `tm` (through `method`) on `base` with `args`, quietly, in a temporary directory.
fn train_quiet(
    args: &TrainingArgs,
    tm: &dyn trainer::TrainTask<f32>,
    base: &mut Base,
    method: &dyn Method<f32>,
) -> Result<Recorder> {
    let mut args = args.clone();
    args.output_dir = temp_dir("iv-data");
    let mut record = Recorder::default();
    let mults = method.lr_multipliers();
    let result = trainer::adamw(&args, &base.store, &mults).and_then(|opt| {
        trainer::train(
            Training::new(&args, tm, &mut base.store)
                .hooks(method)
                .optimizer(Box::new(opt))
                .progress(&mut record),
        )
    });
    let _ = std::fs::remove_dir_all(&args.output_dir);
    result?;
    Ok(record)
}

// ---------------------------------------------------------------------------------------------
// 31. Fine-tuning versus retrieval for knowledge

/// One question about a fact of the world's seen side (the side the corpus is written about).
#[derive(Debug, Clone, Serialize)]
pub struct FactQuestion {
    pub question: String,
    pub answer: String,
    /// The person asked about.
    pub person: usize,
}

/// The answer to `fact` of person `pi`, as the corpus's sentences state it.
fn fact_answer(w: &World, pi: usize, fact: Fact) -> String {
    fact_sentence(w, pi, fact, Mention::Full, &mut StdRng::seed_from_u64(0)).1
}

/// Every (person, fact) of the seen side with a single answer, shuffled by a fixed seed.
fn seen_facts(w: &World) -> Vec<(usize, Fact)> {
    let mut facts: Vec<(usize, Fact)> = w
        .people_in(Partition::Seen)
        .into_iter()
        .flat_map(|pi| Fact::ALL.into_iter().map(move |f| (pi, f)))
        // Cats: zero cats is never stated; attended: people with two events have two answers.
        .filter(|&(pi, f)| match f {
            Fact::Cats => w.people[pi].cats > 0,
            Fact::Attended => w.people[pi].events.len() == 1,
            _ => true,
        })
        .collect();
    facts.shuffle(&mut StdRng::seed_from_u64(31));
    facts
}

fn ask(w: &World, facts: &[(usize, Fact)], rng: &mut StdRng) -> Vec<FactQuestion> {
    facts
        .iter()
        .map(|&(pi, f)| FactQuestion {
            question: question(w, pi, f, rng),
            answer: fact_answer(w, pi, f),
            person: pi,
        })
        .collect()
}

/// What a closed-book model wrote: exact match and whether the answer appears in its first 16
/// tokens at all (the knowledge, whatever the format).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ClosedBook {
    pub exact_match: f64,
    pub contains: f64,
}

fn closed_book(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    qs: &[FactQuestion],
) -> Result<ClosedBook> {
    let opts = GenerateOptions {
        max_new_tokens: 16,
        eos: tm.tok.eos_id().map(|e| e as usize),
        pad: tm.tok.pad_id().unwrap_or(0) as usize,
        max_length: Some(tm.model.config.max_len),
        ..Default::default()
    };
    let (mut em, mut contains) = (0usize, 0usize);
    for chunk in qs.chunks(32) {
        let prompts: Vec<Vec<usize>> = chunk
            .iter()
            .map(|q| {
                Ok(tm
                    .tok
                    .encode(&q.question, false)?
                    .into_iter()
                    .map(|x| x as usize)
                    .collect())
            })
            .collect::<Result<_>>()?;
        let out = generate(&tm.model, store, hooks, &prompts, &opts)?;
        for (ids, q) in out.iter().zip(chunk) {
            let ids: Vec<u32> = ids.iter().map(|&x| x as u32).collect();
            let text = tm.tok.decode(&ids, true)?;
            em += usize::from(metrics::exact_match(&text, &q.answer));
            contains += usize::from(
                metrics::normalize_answer(&text).contains(&metrics::normalize_answer(&q.answer)),
            );
        }
    }
    let n = qs.len().max(1) as f64;
    Ok(ClosedBook {
        exact_match: em as f64 / n,
        contains: contains as f64 / n,
    })
}

/// The retrieved passage for a question as a span example the reader can take: the passage,
/// shortened sentence by sentence from the end (never the answer's) until it fits the reader's
/// max_len. `None` when the passage does not contain the answer (the reader cannot be right).
fn reader_item(tm: &TaskModel, q: &FactQuestion, passage: &str) -> Option<Item> {
    let mut sentences: Vec<&str> = passage.split_inclusive(". ").collect();
    loop {
        let context = sentences.concat();
        let answer_start = context.find(&q.answer)?;
        let example = Example::Span {
            context: context.trim_end().to_string(),
            question: q.question.clone(),
            answer: q.answer.clone(),
            answer_start,
        };
        if let Ok(encoded) = encode(&tm.tok, &example, &[], tm.max_len) {
            return Some(Item { example, encoded });
        }
        let drop = sentences.iter().rposition(|s| !s.contains(&q.answer))?;
        sentences.remove(drop);
    }
}

/// One seed of question 31: the closed-book fine-tune and the reader.
#[derive(Debug, Clone, Serialize)]
pub struct KnowledgeSeed {
    pub ft_trained: ClosedBook,
    pub ft_unseen: ClosedBook,
    pub rag_trained: f64,
    pub rag_unseen: f64,
    /// The reader's exact match on the QA task's own test split (gold context).
    pub reader_test: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Knowledge {
    pub seeds: Vec<u64>,
    pub corpus_docs: usize,
    pub trained_facts: usize,
    pub unseen_facts: usize,
    pub ft_steps: usize,
    pub reader_steps: usize,
    /// Share of questions whose top passage contains the answer.
    pub hit_trained: f64,
    pub hit_unseen: f64,
    /// One unseen question, its top passage and the answer.
    pub example: (String, String, String),
    /// The pre-trained model asked closed-book, before any fine-tuning.
    pub base_trained: ClosedBook,
    pub base_unseen: ClosedBook,
    pub runs: Vec<KnowledgeSeed>,
}

impl Knowledge {
    fn col(&self, f: impl Fn(&KnowledgeSeed) -> f64) -> Vec<f64> {
        self.runs.iter().map(f).collect()
    }
    pub fn ft_trained(&self) -> Vec<f64> {
        self.col(|r| r.ft_trained.exact_match)
    }
    pub fn ft_unseen(&self) -> Vec<f64> {
        self.col(|r| r.ft_unseen.exact_match)
    }
    pub fn rag_trained(&self) -> Vec<f64> {
        self.col(|r| r.rag_trained)
    }
    pub fn rag_unseen(&self) -> Vec<f64> {
        self.col(|r| r.rag_unseen)
    }
}

pub fn knowledge(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<Knowledge> {
    let world = World::generate(WORLD_SEED);
    let corpus_docs =
        crate::train::pretrain::PretrainArgs::new(crate::train::pretrain::Base::GptTiny).docs;
    let corpus = world.corpus(corpus_docs, CORPUS_SEED);
    let index = Bm25::new(&corpus);
    let (n_trained, n_unseen) = mode.pick((48, 32), (240, 120));
    let facts = seen_facts(&world);
    let (trained, unseen) = facts.split_at(n_trained.min(facts.len()));
    let unseen = &unseen[..n_unseen.min(unseen.len())];
    // Training asks each trained fact twice, test asks it once more, each phrasing drawn afresh.
    let mut rng = StdRng::seed_from_u64(3100);
    let mut train_qs = ask(&world, trained, &mut rng);
    train_qs.extend(ask(&world, trained, &mut rng));
    let test_trained = ask(&world, trained, &mut rng);
    let test_unseen = ask(&world, unseen, &mut rng);
    progress.line(&format!(
        "BM25 over the {corpus_docs} pre-training documents; {} trained and {} unseen facts",
        trained.len(),
        unseen.len()
    ));
    let top =
        |q: &FactQuestion| -> Option<usize> { index.search(&q.question, 1).first().map(|h| h.0) };
    let retrieved_trained: Vec<Option<usize>> = test_trained.iter().map(top).collect();
    let retrieved_unseen: Vec<Option<usize>> = test_unseen.iter().map(top).collect();
    let hit = |qs: &[FactQuestion], r: &[Option<usize>]| {
        qs.iter()
            .zip(r)
            .filter(|(q, d)| d.is_some_and(|d| corpus[d].contains(&q.answer)))
            .count() as f64
            / qs.len().max(1) as f64
    };
    let example = test_unseen
        .iter()
        .zip(&retrieved_unseen)
        .find_map(|(q, d)| {
            d.filter(|&d| corpus[d].contains(&q.answer))
                .map(|d| (q.question.clone(), corpus[d].clone(), q.answer.clone()))
        })
        .unwrap_or_default();

    let data = TaskData {
        train: train_qs
            .iter()
            .map(|q| Example::Generation {
                prompt: q.question.clone(),
                response: q.answer.clone(),
            })
            .collect(),
        ..TaskData::default()
    };
    let closed_model = |seed: u64| -> Result<(Base, TaskModel, Box<dyn Method<f32>>)> {
        let mut base = load_base(BASE)?;
        let (mut tm, method) = prepare(
            &mut base,
            Task::Dialogue,
            data.clone(),
            world.clone(),
            &MethodSpec::Full { last_k: None },
            seed,
        )?;
        tm.name = "closed-book facts".into();
        tm.gen_metric = GenMetric::ExactMatch;
        Ok((base, tm, method))
    };
    let (base0, tm0, m0) = closed_model(0)?;
    let base_trained = closed_book(&tm0, &base0.store, m0.as_ref(), &test_trained)?;
    let base_unseen = closed_book(&tm0, &base0.store, m0.as_ref(), &test_unseen)?;
    drop((base0, tm0, m0));

    let (ft_steps, reader_steps) = mode.pick((20, 20), (300, 120));
    let (ft_lr, reader_lr) = (1e-3, 5e-4);
    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "per seed ({}): full fine-tuning on the trained facts' questions ({ft_steps} steps of 16 at lr {ft_lr:.0e}); the reader, full fine-tuning on the QA task ({reader_steps} steps of 16 at lr {reader_lr:.0e})",
        seeds_text(&seeds)
    ));
    let one = |seed: u64| -> Result<KnowledgeSeed> {
        let (mut base, tm, method) = closed_model(seed)?;
        let mut args = Run::new(
            Task::Dialogue,
            MethodSpec::Full { last_k: None },
            ft_lr,
            ft_steps,
            16,
        )
        .seed(seed)
        .args;
        args.schedule = crate::train::args::ScheduleKind::Linear;
        train_quiet(&args, &tm, &mut base, method.as_ref())?;
        let ft_trained = closed_book(&tm, &base.store, method.as_ref(), &test_trained)?;
        let ft_unseen = closed_book(&tm, &base.store, method.as_ref(), &test_unseen)?;
        drop((base, tm, method));

        let reader = train_run(
            &Run::new(
                Task::Qa,
                MethodSpec::Full { last_k: None },
                reader_lr,
                reader_steps,
                16,
            )
            .seed(seed),
            "the reader",
            &mut (),
        )?;
        let reader_test = reader.evaluate(Split::Test, mode.pick(48, 300))?["exact_match"];
        let rag = |qs: &[FactQuestion], r: &[Option<usize>]| -> Result<f64> {
            let items: Vec<Item> = qs
                .iter()
                .zip(r)
                .filter_map(|(q, d)| reader_item(&reader.tm, q, &corpus[(*d)?]))
                .collect();
            if items.is_empty() {
                return Ok(0.0);
            }
            let em =
                reader
                    .tm
                    .evaluate_items(&reader.base.store, reader.method.as_ref(), &items, 32)?
                    ["exact_match"];
            Ok(em * items.len() as f64 / qs.len().max(1) as f64)
        };
        Ok(KnowledgeSeed {
            ft_trained,
            ft_unseen,
            rag_trained: rag(&test_trained, &retrieved_trained)?,
            rag_unseen: rag(&test_unseen, &retrieved_unseen)?,
            reader_test,
        })
    };
    let runs = side_by_side(seeds.len(), lanes(seeds.len()), |k| one(seeds[k]))?;
    Ok(Knowledge {
        seeds,
        corpus_docs,
        trained_facts: trained.len(),
        unseen_facts: unseen.len(),
        ft_steps,
        reader_steps,
        hit_trained: hit(&test_trained, &retrieved_trained),
        hit_unseen: hit(&test_unseen, &retrieved_unseen),
        example,
        base_trained,
        base_unseen,
        runs,
    })
}

impl Evidence for Knowledge {
    fn render(&self) -> String {
        let mut s = format!(
            "questions about facts of the world's seen side (the side the pre-training corpus is written about): {} facts the closed-book model is fine-tuned on (two phrasings each, asked in a third draw), {} it never sees; exact match, mean ± 95% interval over seeds {} (Student-t)\n\n",
            self.trained_facts,
            self.unseen_facts,
            seeds_text(&self.seeds)
        );
        let cb = |f: &dyn Fn(&KnowledgeSeed) -> ClosedBook, em: bool| -> String {
            let xs: Vec<f64> = self
                .runs
                .iter()
                .map(|r| if em { f(r).exact_match } else { f(r).contains })
                .collect();
            ci(&xs, 3)
        };
        let rows = vec![
            vec![
                "pre-trained gpt-tiny, closed-book".into(),
                num(self.base_trained.exact_match, 3),
                num(self.base_unseen.exact_match, 3),
                format!(
                    "{} / {}",
                    num(self.base_trained.contains, 3),
                    num(self.base_unseen.contains, 3)
                ),
            ],
            vec![
                format!("fine-tuned closed-book (full, {} steps)", self.ft_steps),
                cb(&|r| r.ft_trained, true),
                cb(&|r| r.ft_unseen, true),
                format!(
                    "{} / {}",
                    cb(&|r| r.ft_trained, false),
                    cb(&|r| r.ft_unseen, false)
                ),
            ],
            vec![
                format!("BM25 top passage + reader ({} steps)", self.reader_steps),
                ci(&self.rag_trained(), 3),
                ci(&self.rag_unseen(), 3),
                "-".into(),
            ],
        ];
        s.push_str(&table(
            &[
                "pipeline",
                "EM, trained facts",
                "EM, unseen facts",
                "answer anywhere in 16 tokens (trained / unseen)",
            ],
            &rows,
        ));
        let reader: Vec<f64> = self.runs.iter().map(|r| r.reader_test).collect();
        s.push_str(&format!(
            "\nretrieval: BM25 (k1 1.2, b 0.75) over {} corpus documents; the top passage contains the answer for {} of the trained-fact questions and {} of the unseen ones\nthe reader (gpt-tiny + span head trained on the QA task) on the QA task's own test split, gold context: EM {}\n",
            self.corpus_docs,
            Fmt::Percent(1).show(self.hit_trained),
            Fmt::Percent(1).show(self.hit_unseen),
            ci(&reader, 3)
        ));
        let (q, p, a) = &self.example;
        if !q.is_empty() {
            s.push_str(&format!(
                "\nan unseen fact: {q}  (answer: {a})\n  retrieved: {p}\n"
            ));
        }
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let base_em = vec![self.base_trained.exact_match; self.runs.len()];
        let fmt = paired(&self.ft_trained(), &base_em);
        let carry = paired(&self.ft_unseen(), &self.ft_trained());
        let rag_vs_ft = paired(&self.rag_unseen(), &self.ft_unseen());
        // Retrieval's exact match given a top passage that holds the answer: the reader's
        // accuracy, which the two fact sets share unless fine-tuning data mattered to it.
        let read = |xs: Vec<f64>, hit: f64| -> Vec<f64> {
            xs.iter().map(|x| x / hit.max(f64::MIN_POSITIVE)).collect()
        };
        let rag_same = paired(
            &read(self.rag_unseen(), self.hit_unseen),
            &read(self.rag_trained(), self.hit_trained),
        );
        vec![
            Claim::new(
                "fine-tuning teaches the answer's form: the fine-tuned model answers trained facts exactly far more often than the pre-trained one",
                fmt.verdict == stats::Verdict::Better,
            )
            .measured("EM on trained facts, fine-tuned − pre-trained", fmt.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "closed-book fine-tuning does not answer facts it was not trained on as well as those it was",
                carry.verdict == stats::Verdict::Worse,
            )
            .measured("EM, unseen − trained facts (fine-tuned)", carry.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "retrieval + reading answers the unseen facts better than closed-book fine-tuning",
                rag_vs_ft.verdict == stats::Verdict::Better,
            )
            .measured("EM on unseen facts, retrieval − fine-tuned", rag_vs_ft.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "retrieval does not care whether a fact was in the fine-tuning data: when the top passage holds the answer, the reader is as accurate on unseen facts as on trained ones (the interval contains 0)",
                rag_same.verdict == stats::Verdict::Indistinguishable,
            )
            .measured(
                "EM ÷ top-passage hit rate, unseen − trained facts",
                rag_same.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "BM25's top passage holds the answer for most questions",
                self.hit_unseen > 0.5,
            )
            .measured("top-1 passage contains the answer (unseen)", self.hit_unseen, Fmt::Percent(1)),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 32. The KV cache

#[derive(Debug, Clone, Serialize)]
pub struct CacheRun {
    pub new_tokens: usize,
    pub flops_cached: u64,
    pub flops_uncached: u64,
    pub ms_cached: f64,
    pub ms_uncached: f64,
    pub identical: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct KvCacheEvidence {
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub bytes_per_value: usize,
    /// Tokens held after a prefill, and the bytes of the keys and values the cache holds.
    pub tokens: usize,
    pub cache_bytes: usize,
    pub formula_bytes: usize,
    pub batch: usize,
    pub prompt_tokens: usize,
    pub runs: Vec<CacheRun>,
    /// LLaMA-7B (32 layers, 32 heads of 128, fp16) at 4,096 tokens, one sequence.
    pub llama_bytes: f64,
}

/// The cache's size: 2 (keys and values) · layers · heads · head_dim · tokens · bytes.
pub fn kv_cache_bytes(
    layers: usize,
    heads: usize,
    head_dim: usize,
    tokens: usize,
    bytes: usize,
) -> u128 {
    2 * layers as u128 * heads as u128 * head_dim as u128 * tokens as u128 * bytes as u128
}

pub fn kv_cache(mode: Mode) -> Result<KvCacheEvidence> {
    let base = load_base(BASE)?;
    let cfg = &base.model.config;
    let (layers, heads, head_dim) = (cfg.n_layers, cfg.n_heads, cfg.head_size());
    let bytes_per_value = std::mem::size_of::<f32>();
    // Prompts: the first dialogue validation prompts.
    let (data, _) = crate::lab::finetune::task_data(Task::Dialogue, None, None)?;
    let batch = 4;
    // Prompts short enough that every row generates all its tokens within max_len.
    let mut prompts: Vec<Vec<usize>> = Vec::new();
    for e in &data.validation {
        if let Example::Generation { prompt, .. } = e {
            let ids = base.tok.encode(prompt, false)?;
            if ids.len() <= cfg.max_len / 2 && prompts.len() < batch {
                prompts.push(ids.into_iter().map(|x| x as usize).collect());
            }
        }
    }
    if prompts.is_empty() {
        return crate::error::invalid("interview 32", "no dialogue prompt fits half of max_len");
    }
    let prompt_tokens = prompts.iter().map(Vec::len).max().unwrap_or(0);
    // The cache of one prompt after its prefill: measured against the formula.
    let one = &prompts[0];
    let ids = Array2::from_shape_fn((1, one.len()), |(_, j)| one[j]);
    let mut cache = KvCache::<f32>::new(&base.model);
    let mut tape = Tape::inference(&base.store);
    base.model.forward_cached(
        &mut tape,
        &crate::nn::NoHooks,
        &Input::new(ids.view()),
        &mut cache,
    )?;
    let cache_bytes: usize = cache
        .layers
        .iter()
        .filter_map(|l| l.keys_values())
        .map(|(k, v)| (k.len() + v.len()) * bytes_per_value)
        .sum();
    let formula_bytes =
        kv_cache_bytes(layers, heads, head_dim, one.len(), bytes_per_value) as usize;

    let mut runs = Vec::new();
    for new_tokens in mode.pick(vec![8, 24], vec![16, 64]) {
        let opts = GenerateOptions {
            max_new_tokens: new_tokens,
            eos: None,
            pad: base.tok.pad_id().unwrap_or(0) as usize,
            max_length: Some(cfg.max_len),
            ..Default::default()
        };
        let hooks = &crate::nn::NoHooks;
        let (f0, t0) = (kernels::stats().gemm_flops, Instant::now());
        let cached = generate(&base.model, &base.store, hooks, &prompts, &opts)?;
        let (f1, t1) = (kernels::stats().gemm_flops, Instant::now());
        let uncached = generate_uncached(&base.model, &base.store, hooks, &prompts, &opts)?;
        let (f2, t2) = (kernels::stats().gemm_flops, Instant::now());
        runs.push(CacheRun {
            new_tokens,
            flops_cached: f1 - f0,
            flops_uncached: f2 - f1,
            ms_cached: (t1 - t0).as_secs_f64() * 1e3,
            ms_uncached: (t2 - t1).as_secs_f64() * 1e3,
            identical: cached == uncached,
        });
    }
    Ok(KvCacheEvidence {
        layers,
        heads,
        head_dim,
        bytes_per_value,
        tokens: one.len(),
        cache_bytes,
        formula_bytes,
        batch,
        prompt_tokens,
        runs,
        llama_bytes: kv_cache_bytes(32, 32, 128, 4096, 2) as f64,
    })
}

impl Evidence for KvCacheEvidence {
    fn render(&self) -> String {
        let mut s = format!(
            "gpt-tiny: {} layers, {} heads of {}, f32 ({} bytes): the cache holds 2 · {} · {} · {} · {} = {} bytes per token of one sequence\n",
            self.layers,
            self.heads,
            self.head_dim,
            self.bytes_per_value,
            self.layers,
            self.heads,
            self.head_dim,
            self.bytes_per_value,
            kv_cache_bytes(self.layers, self.heads, self.head_dim, 1, self.bytes_per_value)
        );
        s.push_str(&format!(
            "after the prefill of a {}-token prompt: {} bytes of keys and values in the cache, the formula says {}\n\n",
            self.tokens, self.cache_bytes, self.formula_bytes
        ));
        s.push_str(&format!(
            "greedy generation for {} dialogue prompts (up to {} tokens, left-padded), without an end token; FLOPs are the matrix products the kernels counted (the prefill included); wall times were measured under load (other sessions share the cores) and are illustrative only\n\n",
            self.batch, self.prompt_tokens
        ));
        let rows: Vec<Vec<String>> = self
            .runs
            .iter()
            .map(|r| {
                vec![
                    r.new_tokens.to_string(),
                    format!("{:.2e}", r.flops_cached as f64),
                    format!("{:.2e}", r.flops_uncached as f64),
                    format!(
                        "{:.2}x",
                        r.flops_uncached as f64 / r.flops_cached.max(1) as f64
                    ),
                    format!(
                        "{:.2e}",
                        r.flops_cached as f64 / (r.new_tokens * self.batch) as f64
                    ),
                    format!(
                        "{:.2e}",
                        r.flops_uncached as f64 / (r.new_tokens * self.batch) as f64
                    ),
                    format!("{:.0} / {:.0}", r.ms_cached, r.ms_uncached),
                    if r.identical { "yes" } else { "NO" }.into(),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "new tokens",
                "FLOPs cached",
                "FLOPs uncached",
                "ratio",
                "per token, cached",
                "per token, uncached",
                "ms cached / uncached (under load)",
                "same tokens",
            ],
            &rows,
        ));
        s.push_str(&format!(
            "\nLLaMA-7B (32 layers, 32 heads of 128, fp16) at 4,096 tokens: 2 · 32 · 32 · 128 · 4096 · 2 = {:.0} bytes = {:.2} GiB per sequence\n",
            self.llama_bytes,
            self.llama_bytes / (1u64 << 30) as f64
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let ratios: Vec<f64> = self
            .runs
            .iter()
            .map(|r| r.flops_uncached as f64 / r.flops_cached.max(1) as f64)
            .collect();
        vec![
            Claim::new(
                "the cache holds exactly 2 · layers · heads · head_dim · tokens · bytes",
                self.cache_bytes == self.formula_bytes,
            ),
            Claim::new(
                "generation with and without the cache gives identical tokens",
                self.runs.iter().all(|r| r.identical),
            ),
            Claim::new(
                "the cache needs fewer matrix-product FLOPs than re-running the sequence",
                ratios.iter().all(|&r| r > 1.0),
            )
            .measured(
                "FLOPs uncached / cached, longest run",
                ratios.last().copied().unwrap_or(f64::NAN),
                Fmt::Times(2),
            ),
            Claim::new(
                "the saving grows with the number of tokens generated",
                ratios.windows(2).all(|w| w[1] > w[0]),
            ),
            Claim::new(
                format!(
                    "LLaMA-7B's cache at 4k context is 2 GiB per sequence in fp16 ({:.2} GiB)",
                    self.llama_bytes / (1u64 << 30) as f64
                ),
                self.llama_bytes == (2u64 << 30) as f64,
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 33. Chat templates, the end token, packing

#[derive(Debug, Clone, Serialize)]
pub struct ChatPacking {
    /// A dialogue example as the model sees it, with what is masked.
    pub rendered: String,
    pub masked: usize,
    pub targets: usize,
    pub eos: String,
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub prompts: usize,
    pub max_new: usize,
    /// Share of prompts whose generation emitted the end token within `max_new` tokens.
    pub stop_base: f64,
    pub stop_trained: Vec<f64>,
    pub stop_untrained: Vec<f64>,
    /// Mean tokens before the end token (or max_new when it never came).
    pub len_trained: Vec<f64>,
    pub len_untrained: Vec<f64>,
    // Packing.
    pub examples: usize,
    pub row_len: usize,
    pub rows: usize,
    /// Largest |packed − unpacked| per-example mean loss (f64), masked and naive.
    pub diff_masked: f64,
    pub diff_naive: f64,
    pub mean_diff_naive: f64,
    pub batch: usize,
    pub pad_padded: f64,
    /// Every row padded to the model's max_len (static shapes).
    pub pad_max_len: f64,
    pub pad_packed: f64,
}

/// Mean next-token cross-entropy of positions [start, start + len) of row `row` of `logits`
/// (rows, T, V) against `labels` (the label of position t + 1 scores position t; -100 skipped).
fn mean_ce(logits: ArrayView3<'_, f64>, row: usize, labels: &[i64], start: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for t in 0..labels.len().saturating_sub(1) {
        let y = labels[t + 1];
        if y == IGNORE_INDEX {
            continue;
        }
        let z = logits.slice(ndarray::s![row, start + t, ..]);
        let m = z.fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + z.iter().map(|&v| (v - m).exp()).sum::<f64>().ln();
        sum += lse - z[y as usize];
        n += 1;
    }
    sum / n.max(1) as f64
}

/// Share of `items`' prompts whose greedy continuation contains the end token within `max_new`
/// tokens, and the mean tokens before it.
fn stop_rate(
    tm: &TaskModel,
    store: &ParamStore<f32>,
    hooks: &dyn Hooks<f32>,
    items: &[Item],
    max_new: usize,
) -> Result<(f64, f64)> {
    let eos = tm.tok.eos_id().map(|e| e as usize);
    let opts = GenerateOptions {
        max_new_tokens: max_new,
        eos: None,
        pad: tm.tok.pad_id().unwrap_or(0) as usize,
        max_length: Some(tm.model.config.max_len),
        ..Default::default()
    };
    let (mut stopped, mut lens) = (0usize, 0usize);
    for chunk in items.chunks(32) {
        let prompts: Vec<Vec<usize>> = chunk
            .iter()
            .map(|i| {
                i.encoded.ids[..i.encoded.prompt_len]
                    .iter()
                    .map(|&x| x as usize)
                    .collect()
            })
            .collect();
        for out in generate(&tm.model, store, hooks, &prompts, &opts)? {
            match out.iter().position(|&x| Some(x) == eos) {
                Some(p) => {
                    stopped += 1;
                    lens += p;
                }
                None => lens += out.len(),
            }
        }
    }
    let n = items.len().max(1) as f64;
    Ok((stopped as f64 / n, lens as f64 / n))
}

pub fn chat_packing(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<ChatPacking> {
    let (steps, prompts, max_new) = (mode.pick(12, 120), mode.pick(24, 100), 40);
    let run = Run::new(
        Task::Dialogue,
        MethodSpec::Lora(crate::peft::lora::LoraConfig::default()),
        3e-3,
        steps,
        8,
    );
    let (base, tm, method) = prepare_run(&run)?;
    let eos_id = tm.tok.eos_id().unwrap_or(0);
    let eos = tm
        .tok
        .id_to_token(eos_id)
        .unwrap_or_else(|| format!("<id {eos_id}>"));
    // The template: one training example's tokens, prompt masked, response and end trained.
    let item = &tm.train[0];
    let Target::Lm(labels) = &item.encoded.target else {
        return crate::error::invalid("interview 33", "dialogue items carry LM labels");
    };
    let prompt_ids: Vec<u32> = item.encoded.ids[..item.encoded.prompt_len].to_vec();
    let response_ids: Vec<u32> = item.encoded.ids[item.encoded.prompt_len..].to_vec();
    let masked = labels.iter().filter(|&&l| l == IGNORE_INDEX).count();
    let targets = labels
        .iter()
        .skip(1)
        .filter(|&&l| l != IGNORE_INDEX)
        .count();
    let rendered = format!(
        "{}\n{}{}",
        tm.tok.decode(&prompt_ids, false)?,
        tm.tok
            .decode(&response_ids[..response_ids.len().saturating_sub(1)], false)?,
        eos
    );
    let val = &tm.validation[..prompts.min(tm.validation.len())];
    let n_prompts = val.len();
    let (stop_base, _) = stop_rate(&tm, &base.store, method.as_ref(), val, max_new)?;
    drop((base, tm, method));

    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "dialogue, LoRA r=8 q,v, {steps} steps of batch 8 at lr 3e-3, with the end token trained and with its label -100; seeds {}",
        seeds_text(&seeds)
    ));
    let jobs: Vec<(u64, bool)> = seeds
        .iter()
        .flat_map(|&s| [(s, true), (s, false)])
        .collect();
    let results = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (seed, trained) = jobs[k];
        let run = run.clone().seed(seed);
        let (mut base, mut tm, method) = prepare_run(&run)?;
        if !trained {
            for item in &mut tm.train {
                if let Target::Lm(l) = &mut item.encoded.target {
                    if let Some(last) = l.last_mut() {
                        *last = IGNORE_INDEX;
                    }
                }
            }
        }
        train_quiet(&run.args, &tm, &mut base, method.as_ref())?;
        let val = &tm.validation[..prompts.min(tm.validation.len())];
        stop_rate(&tm, &base.store, method.as_ref(), val, max_new)
    })?;
    let pick = |trained: bool, f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        jobs.iter()
            .zip(&results)
            .filter(|((_, t), _)| *t == trained)
            .map(|(_, r)| f(r))
            .collect()
    };

    // Packing, in f64 so that only the masking can make packed and unpacked differ.
    let loaded = crate::io::hf::load::<f64>(&resolve_base(BASE)?)?;
    let (model, store): (Transformer, ParamStore<f64>) = (loaded.model, loaded.store);
    // Short instruction examples, as packing is for: the code task's requests and programs.
    let (data, _) = crate::lab::finetune::task_data(Task::Codegen, None, None)?;
    let tok = crate::io::hf::load_tokenizer(&resolve_base(BASE)?)?;
    let n = mode.pick(16, 64).min(data.train.len());
    let examples: Vec<(Vec<u32>, Vec<i64>)> = data.train[..n]
        .iter()
        .map(|e| {
            let enc = encode(&tok, e, &[], model.config.max_len)?;
            let Target::Lm(l) = enc.target else {
                return crate::error::invalid("interview 33", "code items carry LM labels");
            };
            Ok((enc.ids, l))
        })
        .collect::<Result<_>>()?;
    let row_len = model.config.max_len;
    let pad = tok.pad_id().unwrap_or(0);
    let packed = pack(&examples, row_len, pad)?;
    let run_rows = |documents: bool| -> Result<ndarray::Array3<f64>> {
        let mut tape = Tape::inference(&store);
        let naive = packed.naive_positions();
        let mut input = Input::new(packed.ids.view()).with_mask(packed.mask.view());
        input = if documents {
            input
                .with_positions(packed.positions.view())
                .with_documents(packed.documents.view())
        } else {
            input.with_positions(naive.view())
        };
        let h = model.forward(&mut tape, &crate::nn::NoHooks, &input)?;
        let logits = model.lm_logits(&mut tape, &crate::nn::NoHooks, h)?;
        tape.value(logits)
            .to_owned()
            .into_dimensionality()
            .map_err(|_| crate::error::Error::Shape {
                op: "interview 33",
                detail: "logits are not (rows, T, V)".into(),
            })
    };
    let masked_logits = run_rows(true)?;
    let naive_logits = run_rows(false)?;
    let (mut diff_masked, mut diff_naive, mut sum_naive) = (0.0f64, 0.0f64, 0.0f64);
    for (i, (ids, labels)) in examples.iter().enumerate() {
        let (row, col, _) = packed.placed[i];
        let one = Array2::from_shape_fn((1, ids.len()), |(_, j)| ids[j] as usize);
        let mut tape = Tape::inference(&store);
        let h = model.forward(&mut tape, &crate::nn::NoHooks, &Input::new(one.view()))?;
        let logits = model.lm_logits(&mut tape, &crate::nn::NoHooks, h)?;
        let alone: ndarray::Array3<f64> = tape
            .value(logits)
            .to_owned()
            .into_dimensionality()
            .map_err(|_| crate::error::Error::Shape {
                op: "interview 33",
                detail: "logits are not (1, T, V)".into(),
            })?;
        let unpacked = mean_ce(alone.view(), 0, labels, 0);
        let m = mean_ce(masked_logits.view(), row, labels, col);
        let v = mean_ce(naive_logits.view(), row, labels, col);
        diff_masked = diff_masked.max((m - unpacked).abs());
        diff_naive = diff_naive.max((v - unpacked).abs());
        sum_naive += (v - unpacked).abs();
    }
    let batch = 8;
    let lengths: Vec<usize> = examples.iter().map(|e| e.0.len()).collect();
    Ok(ChatPacking {
        rendered,
        masked,
        targets,
        eos,
        seeds,
        steps,
        prompts: n_prompts,
        max_new,
        stop_base,
        stop_trained: pick(true, |r| r.0),
        stop_untrained: pick(false, |r| r.0),
        len_trained: pick(true, |r| r.1),
        len_untrained: pick(false, |r| r.1),
        examples: examples.len(),
        row_len,
        rows: packed.ids.nrows(),
        diff_masked,
        diff_naive,
        mean_diff_naive: sum_naive / examples.len().max(1) as f64,
        batch,
        pad_padded: padded_pad_share(&lengths, batch),
        pad_max_len: 1.0
            - lengths.iter().sum::<usize>() as f64 / (lengths.len() * row_len).max(1) as f64,
        pad_packed: packed.pad_share(),
    })
}

impl Evidence for ChatPacking {
    fn render(&self) -> String {
        let mut s = format!(
            "the dialogue task's template (roles \"User:\" and \"Assistant:\", one turn a line; the end token {} closes the answer):\n\n{}\n\n{} prompt tokens masked (label -100); {} target tokens: the reply and the end token\n\n",
            self.eos, self.rendered, self.masked, self.targets
        );
        s.push_str(&format!(
            "stop rate: share of {} validation prompts whose greedy continuation emits {} within {} tokens; LoRA r=8 q,v, {} steps of batch 8 at lr 3e-3; mean ± 95% interval over seeds {}\n\n",
            self.prompts, self.eos, self.max_new, self.steps, seeds_text(&self.seeds)
        ));
        s.push_str(&table(
            &["model", "stop rate", "tokens before stopping"],
            &[
                vec![
                    "pre-trained, no fine-tuning".into(),
                    num(self.stop_base, 3),
                    "-".into(),
                ],
                vec![
                    "fine-tuned, end token trained".into(),
                    ci(&self.stop_trained, 3),
                    ci(&self.len_trained, 1),
                ],
                vec![
                    "fine-tuned, end token's label -100".into(),
                    ci(&self.stop_untrained, 3),
                    ci(&self.len_untrained, 1),
                ],
            ],
        ));
        s.push_str(&format!(
            "\npacking the code task's first {} training examples (request → program) into {} rows of {} tokens, first fit (f64): per-example mean loss, packed − alone\n\n",
            self.examples, self.rows, self.row_len
        ));
        s.push_str(&table(
            &["packing", "largest |difference|", "mean |difference|"],
            &[
                vec![
                    "block-diagonal mask, positions restart".into(),
                    format!("{:.1e}", self.diff_masked),
                    "-".into(),
                ],
                vec![
                    "naive (attends across documents)".into(),
                    format!("{:.3}", self.diff_naive),
                    format!("{:.3}", self.mean_diff_naive),
                ],
            ],
        ));
        s.push_str(&format!(
            "\npad tokens: {} of the rows padded to max_len {}, {} of batches of {} padded to their longest row, {} of the packed rows\n",
            Fmt::Percent(1).show(self.pad_max_len),
            self.row_len,
            Fmt::Percent(1).show(self.pad_padded),
            self.batch,
            Fmt::Percent(1).show(self.pad_packed)
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let d = paired(&self.stop_trained, &self.stop_untrained);
        vec![
            Claim::new(
                "trained with its end token, the model stops more often than with the end token's label masked",
                d.verdict == stats::Verdict::Better,
            )
            .measured("stop rate, end trained − masked", d.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "with cross-document masking each packed example's loss equals its unpacked loss (to 1e-6)",
                self.diff_masked < 1e-6,
            )
            .measured("largest |packed − alone|", self.diff_masked, Fmt::Sci(1)),
            Claim::new(
                "packed naively, tokens attend across documents and the loss differs",
                self.diff_naive > 1e-3,
            )
            .measured("largest |naive − alone|", self.diff_naive, Fmt::Fixed(3)),
            Claim::new(
                "packing wastes fewer tokens on padding than padding every row to max_len",
                self.pad_packed < self.pad_max_len,
            )
            .measured(
                "pad share, padded to max_len − packed",
                self.pad_max_len - self.pad_packed,
                Fmt::Percent(1),
            ),
            Claim::new(
                "packing wastes fewer tokens on padding than padding each batch to its longest row",
                self.pad_packed < self.pad_padded,
            )
            .measured(
                "pad share, padded − packed",
                self.pad_padded - self.pad_packed,
                Fmt::Percent(1),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 34. Noisy labels

#[derive(Debug, Clone, Serialize)]
pub struct NoiseRow {
    pub label: String,
    pub noise: f64,
    pub label_smoothing: f64,
    pub early_stopping: bool,
    /// Test accuracy per seed.
    pub accuracy: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NoisyLabels {
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub lr: f64,
    pub test_examples: usize,
    pub rows: Vec<NoiseRow>,
}

impl NoisyLabels {
    pub fn row(&self, label: &str) -> Option<&NoiseRow> {
        self.rows.iter().find(|r| r.label == label)
    }
}

/// Flips a share `noise` of the classification labels of `items` to another class, chosen by
/// `seed` (the same examples for every run with that seed). Returns how many were flipped.
pub fn flip_labels(items: &mut [Item], classes: usize, noise: f64, seed: u64) -> usize {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x4e015e);
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.shuffle(&mut rng);
    let n = ((noise * items.len() as f64).round() as usize).min(items.len());
    let mut flipped = 0;
    for &i in &order[..n] {
        if let Target::Class(c) = &mut items[i].encoded.target {
            if classes > 1 {
                *c = (*c + rng.random_range(1..classes)) % classes;
                flipped += 1;
            }
        }
    }
    flipped
}

pub fn noisy_labels(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<NoisyLabels> {
    let (steps, lr, test_examples) = (mode.pick(10, 150), 5e-4, mode.pick(64, 400));
    let conditions: Vec<(&str, f64, f64, bool)> = vec![
        ("clean", 0.0, 0.0, false),
        ("10% flipped", 0.1, 0.0, false),
        ("30% flipped", 0.3, 0.0, false),
        ("30% flipped, label smoothing 0.2", 0.3, 0.2, false),
        ("30% flipped, early stopping", 0.3, 0.0, true),
    ];
    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "sentiment, full fine-tuning, {steps} steps of batch 16 at lr {lr:.0e}, {} conditions × seeds {}",
        conditions.len(),
        seeds_text(&seeds)
    ));
    let jobs: Vec<(usize, u64)> = (0..conditions.len())
        .flat_map(|c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let acc = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (c, seed) = jobs[k];
        let (_, noise, smoothing, early) = conditions[c];
        let mut run = Run::new(
            Task::Sentiment,
            MethodSpec::Full { last_k: None },
            lr,
            steps,
            16,
        )
        .seed(seed);
        if early {
            run = run.eval_every((steps / 6).max(1), mode.pick(32, 200));
            run.args.load_best_model_at_end = true;
            run.args.metric_for_best_model = "accuracy".into();
        }
        let (mut base, mut tm, method) = prepare_run(&run)?;
        let classes = tm.labels.len();
        flip_labels(&mut tm.train, classes, noise, seed);
        tm.label_smoothing = smoothing;
        train_quiet(&run.args, &tm, &mut base, method.as_ref())?;
        Ok(trainer::TrainTask::<f32>::evaluate(
            &tm,
            &base.store,
            method.as_ref(),
            Split::Test,
            test_examples,
            32,
        )?["accuracy"])
    })?;
    let rows = conditions
        .iter()
        .enumerate()
        .map(
            |(c, &(label, noise, label_smoothing, early_stopping))| NoiseRow {
                label: label.into(),
                noise,
                label_smoothing,
                early_stopping,
                accuracy: jobs
                    .iter()
                    .zip(&acc)
                    .filter(|((ci, _), _)| *ci == c)
                    .map(|(_, a)| *a)
                    .collect(),
            },
        )
        .collect();
    Ok(NoisyLabels {
        seeds,
        steps,
        lr,
        test_examples,
        rows,
    })
}

impl Evidence for NoisyLabels {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, full fine-tuning, {} steps of batch 16 at lr {:.0e}; a share of the training labels flipped (validation and test stay clean); test accuracy on {} examples, mean ± 95% interval over seeds {}; difference to clean paired by seed\n\n",
            self.steps,
            self.lr,
            self.test_examples,
            seeds_text(&self.seeds)
        );
        let clean = self.rows[0].accuracy.clone();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let d = paired(&r.accuracy, &clean);
                vec![
                    r.label.clone(),
                    ci(&r.accuracy, 3),
                    if r.label == "clean" {
                        "-".into()
                    } else {
                        format!("{} ({})", d.difference.short(3), d.verdict.name())
                    },
                ]
            })
            .collect();
        s.push_str(&table(
            &["training labels", "test accuracy", "− clean"],
            &rows,
        ));
        s.push_str("early stopping: evaluated on the clean validation split 6 times, the best evaluation's weights restored at the end\n");
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let get = |l: &str| self.row(l).map(|r| r.accuracy.clone()).unwrap_or_default();
        let clean = get("clean");
        let (n10, n30) = (get("10% flipped"), get("30% flipped"));
        let (ls, es) = (
            get("30% flipped, label smoothing 0.2"),
            get("30% flipped, early stopping"),
        );
        let d10 = paired(&n10, &clean);
        let d30 = paired(&n30, &clean);
        let dls = paired(&ls, &n30);
        let des = paired(&es, &n30);
        vec![
            Claim::new(
                "30% flipped labels lower test accuracy",
                d30.verdict == stats::Verdict::Worse,
            )
            .measured(
                "accuracy, 30% flipped − clean",
                d30.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "10% flipped labels lower test accuracy",
                d10.verdict == stats::Verdict::Worse,
            )
            .measured(
                "accuracy, 10% flipped − clean",
                d10.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "label smoothing recovers some of the loss at 30% noise",
                dls.verdict == stats::Verdict::Better,
            )
            .measured(
                "accuracy, smoothing − plain at 30%",
                dls.difference.mean,
                Fmt::Signed(3),
            ),
            Claim::new(
                "early stopping on a clean validation set recovers some of it",
                des.verdict == stats::Verdict::Better,
            )
            .measured(
                "accuracy, early stopping − plain at 30%",
                des.difference.mean,
                Fmt::Signed(3),
            ),
        ]
    }
}

// ---------------------------------------------------------------------------------------------
// 35. Replay against forgetting

#[derive(Debug, Clone, Serialize)]
pub struct ReplayRow {
    pub share: f64,
    /// Windows replayed per batch.
    pub replayed: usize,
    /// Held-out LM loss after − before, per seed.
    pub forgetting: Vec<f64>,
    pub accuracy: Vec<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayEvidence {
    pub seeds: Vec<u64>,
    pub steps: usize,
    pub batch: usize,
    pub lr: f64,
    pub window: usize,
    pub before: f64,
    pub test_examples: usize,
    pub rows: Vec<ReplayRow>,
}

pub fn replay(mode: Mode, seeds: usize, progress: &mut dyn Progress) -> Result<ReplayEvidence> {
    let (steps, batch, lr) = (mode.pick(8, 120), 16, 1.5e-3);
    let test_examples = mode.pick(64, 400);
    let window = 64;
    let base = load_base(BASE)?;
    let held = HeldOut::of(&base, mode.pick(1, 4))?;
    // Pre-training text the model was trained on: the corpus's first documents.
    let docs = World::generate(WORLD_SEED).corpus(mode.pick(300, 3000), CORPUS_SEED);
    let text = windows(&base.tok, &docs, true, window)?;
    drop(base);
    let shares = [0.0, 0.1, 0.3];
    let seeds = seed_list(seeds.max(1));
    progress.line(&format!(
        "sentiment, full fine-tuning at lr {lr:.1e} (compare's), {steps} steps of batch {batch}, replaying 0%, 10% and 30% of each batch from the corpus; seeds {}",
        seeds_text(&seeds)
    ));
    let jobs: Vec<(usize, u64)> = (0..shares.len())
        .flat_map(|c| seeds.iter().map(move |&s| (c, s)))
        .collect();
    let out = side_by_side(jobs.len(), lanes(jobs.len()), |k| {
        let (c, seed) = jobs[k];
        let run = Run::new(
            Task::Sentiment,
            MethodSpec::Full { last_k: None },
            lr,
            steps,
            batch,
        )
        .seed(seed);
        let (mut base, tm, method) = prepare_run(&run)?;
        let task = Replay::new(&tm, &text, shares[c], seed)?;
        train_quiet(&run.args, &task, &mut base, method.as_ref())?;
        let f = held.forgetting(&base, method.as_ref())?.delta();
        let a = trainer::TrainTask::<f32>::evaluate(
            &tm,
            &base.store,
            method.as_ref(),
            Split::Test,
            test_examples,
            32,
        )?["accuracy"];
        Ok((f, a))
    })?;
    let rows = shares
        .iter()
        .enumerate()
        .map(|(c, &share)| {
            let mine: Vec<(f64, f64)> = jobs
                .iter()
                .zip(&out)
                .filter(|((ci, _), _)| *ci == c)
                .map(|(_, r)| *r)
                .collect();
            ReplayRow {
                share,
                replayed: ((share * batch as f64).round() as usize).min(batch),
                forgetting: mine.iter().map(|r| r.0).collect(),
                accuracy: mine.iter().map(|r| r.1).collect(),
            }
        })
        .collect();
    Ok(ReplayEvidence {
        seeds,
        steps,
        batch,
        lr,
        window,
        before: held.before,
        test_examples,
        rows,
    })
}

impl Evidence for ReplayEvidence {
    fn render(&self) -> String {
        let mut s = format!(
            "sentiment on gpt-tiny, full fine-tuning at lr {:.1e}, {} steps of batch {}; a share of every batch replaced by {}-token windows of the pre-training corpus (LM loss on them); forgetting: held-out LM loss after − before (before {:.3}); mean ± 95% interval over seeds {}\n\n",
            self.lr,
            self.steps,
            self.batch,
            self.window,
            self.before,
            seeds_text(&self.seeds)
        );
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                vec![
                    Fmt::Percent(0).show(r.share),
                    r.replayed.to_string(),
                    ci(&r.forgetting, 3),
                    ci(&r.accuracy, 3),
                ]
            })
            .collect();
        s.push_str(&table(
            &[
                "replay",
                "windows per batch",
                "forgetting (nats)",
                &format!("test accuracy ({})", self.test_examples),
            ],
            &rows,
        ));
        s
    }

    fn claims(&self) -> Vec<Claim> {
        let (none, ten, thirty) = (&self.rows[0], &self.rows[1], &self.rows[2]);
        let f30 = paired(&thirty.forgetting, &none.forgetting);
        let f10 = paired(&ten.forgetting, &none.forgetting);
        let a30 = paired(&thirty.accuracy, &none.accuracy);
        vec![
            Claim::new(
                "replaying 30% pre-training text forgets less than no replay",
                f30.verdict == stats::Verdict::Worse,
            )
            .measured("forgetting, 30% − none", f30.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "replaying 10% forgets less than no replay",
                f10.verdict == stats::Verdict::Worse,
            )
            .measured("forgetting, 10% − none", f10.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "30% replay keeps the task score: its 95% interval against no replay is not below 0",
                a30.verdict != stats::Verdict::Worse,
            )
            .measured("test accuracy, 30% − none", a30.difference.mean, Fmt::Signed(3)),
            Claim::new(
                "replay's forgetting falls as the share grows (means over seeds)",
                mean(&thirty.forgetting) < mean(&ten.forgetting)
                    && mean(&ten.forgetting) < mean(&none.forgetting),
            ),
        ]
    }
}

/// The Vietnamese question and answer of questions 31–35.
pub const VI: &[(usize, &str, &str)] = &[
    (31, "Nên fine-tune để dạy mô hình các sự kiện (facts), hay truy xuất (retrieve) chúng?",
     "Fine-tuning dạy hành vi và hình thức: trả lời gì và trả lời thế nào (ngắn gọn, đúng định dạng của task), cùng những fact mà mô hình thấy đủ nhiều lần để ghi nhớ. Nó không trả lời được một fact chưa từng được train, và một fact thay đổi thì phải train lại. Retrieval (BM25 hoặc embedding trên một corpus, rồi một reader hoặc chính LLM với đoạn văn trong prompt) cung cấp tri thức ngay lúc trả lời: bất cứ thứ gì corpus có, kể cả fact thêm vào sau khi train, kèm nguồn để dẫn. Vậy: fine-tune cho định dạng, văn phong và kỹ năng, retrieve cho tri thức, và thường là cả hai (một mô hình được fine-tune để đọc các đoạn văn truy xuất được). Ở đây, trên các fact của thế giới, full fine-tuning gpt-tiny trên hai cách hỏi của mỗi fact được train dạy cho nó dạng trả lời ngắn mà mô hình pre-trained không bao giờ đưa ra; khi hỏi lại bằng một lượt cách hỏi mới, nó trả lời được phần lớn các fact đã train và rất ít fact chưa từng thấy, dù pre-training đã nêu cả những fact đó (mô hình pre-trained đôi khi viết ra đáp án, nhưng không bao giờ ở dạng ngắn). BM25 trên corpus pre-training cộng một reader trích xuất (extractive) được train trên task QA trả lời các fact chưa thấy tốt hơn hẳn mô hình fine-tune, và tốt ngang các fact đã train khi đoạn văn đứng đầu chứa đáp án; trần của nó là tần suất đoạn đứng đầu chứa đáp án (khoảng hai trên ba lần) nhân với độ chính xác của reader."),
    (32, "KV cache là gì, và nó tốn bao nhiêu bộ nhớ?",
     "Trong decoder, key và value của một vị trí chỉ phụ thuộc vào các token tính đến vị trí đó, nên trong lúc generate chúng không bao giờ đổi: cache giữ key và value của mọi layer, và mỗi token mới chỉ chạy đúng một hàng của nó qua mô hình, attend tới các key đã cache. Không có cache, mỗi bước phải chạy lại cả chuỗi, nên sinh n token tốn O(n²) lượt token thay vì O(n). Kích thước mỗi chuỗi là 2 (key và value) · số layer · số head · head_dim · số token · số byte mỗi giá trị: với LLaMA-7B ở fp16 và 4.096 token, 2 · 32 · 32 · 128 · 4096 · 2 byte = 2 GiB, bằng một phần bảy 12,6 GiB trọng số fp16 của nó, nên một batch bảy chuỗi như vậy giữ lượng cache bằng lượng trọng số: đó là lý do context dài và batch lớn bị giới hạn bởi bộ nhớ, và vì sao có multi-query và grouped-query attention (ít head key/value hơn), lượng tử hóa cache và paged cache. Cache không thay đổi kết quả: generate có và không có cache cho ra cùng các token."),
    (33, "Chat template là gì, vì sao phải train token kết thúc, và packing hoạt động thế nào?",
     "Chat template biến một cuộc hội thoại thành đúng một chuỗi token mà mô hình được train trên đó: các dấu vai trò (ở đây là \"User:\" và \"Assistant:\"), các lượt nói, và một token kết thúc lượt sau mỗi câu trả lời của assistant. Khi train, các token của prompt bị mask (label -100), còn câu trả lời và token kết thúc thì được train: token kết thúc là cách mô hình học cách dừng, và việc generate dừng khi nó sinh ra token này. Nếu mask luôn cả nó thì không có gì dạy mô hình kết thúc câu trả lời: một template có token kết thúc mới với mô hình (như <|im_end|> của ChatML, thêm vào khi fine-tune) sẽ không bao giờ được sinh ra, và việc generate chạy tới giới hạn độ dài. Token kết thúc của gpt-tiny thì không mới: nó ngăn cách mọi tài liệu pre-training, nên mô hình pre-trained đã tự dừng sau nhiều câu trả lời, và khi label của token kết thúc bị mask, mô hình fine-tune vẫn giữ phần lớn thói quen đó; bảng cho cả hai tỉ lệ dừng và claim cho biết việc train token kết thúc có tạo ra khác biệt đo được qua các seed hay không. Packing ghép nhiều ví dụ ngắn vào một hàng dài đủ độ dài, thay vì pad từng ví dụ tới ví dụ dài nhất, nên không tốn tính toán cho token pad. Làm ngây thơ thì một token attend tới các ví dụ đứng trước nó và vị trí của nó tiếp nối từ chúng, nên loss không còn là loss của riêng ví dụ đó; với cross-document masking (mask causal dạng khối chéo, position đếm lại từ 0 cho mỗi ví dụ) loss của mỗi ví dụ đã pack bằng đúng loss khi không pack, và chỉ phần padding được tiết kiệm."),
    (34, "Nhãn nhiễu (noisy labels) làm gì với fine-tuning, và điều gì giúp được?",
     "Mô hình fit cả nhãn bị lật lẫn nhãn đúng: các pattern sạch được học trước, nhiễu bị ghi nhớ sau, nên accuracy trên test giảm khi train càng lâu và khi tỉ lệ nhiễu càng lớn. Những gì giúp được: làm sạch dữ liệu (cách tốt nhất: gán nhãn lại, hoặc bỏ các ví dụ mà mô hình tự tin không đồng ý), một validation set sạch với early stopping (dừng trước khi nhiễu bị ghi nhớ), label smoothing (target là (1 − ε)·onehot + ε/K nên không nhãn nào, kể cả nhãn bị lật, bị đẩy tới mức chắc chắn tuyệt đối), và các loss bền vững (robust) hoặc ít tham số train hơn. Hãy đo chúng: ở đây, trên task sentiment, một lần full fine-tune ngắn của gpt-tiny được chấm trên một test set sạch qua nhiều seed; bảng cho biết 10% và 30% nhãn bị lật làm mất bao nhiêu ở ngân sách này, và smoothing hay early stopping có lấy lại được phần nào không, với khoảng tin cậy rộng vài điểm, nên các hiệu ứng nhỏ không hiện ra."),
    (35, "Làm sao giảm quên (forgetting) bằng cách trộn lại dữ liệu pre-training?",
     "Replay (rehearsal): một phần của mỗi batch là văn bản thuộc phân phối gốc, train với loss gốc (ở đây là causal LM loss trên các cửa sổ văn bản pre-training), nên gradient ở mỗi bước vẫn kéo trọng số về phía những gì pre-training đã dạy trong khi task kéo chúng đi chỗ khác. Đây là cách chống catastrophic forgetting lâu đời nhất, được dùng trong instruction tuning dưới dạng trộn dữ liệu pre-training (PPO-ptx của InstructGPT) và trong continual pre-training. Cái giá là mỗi bước thấy ít ví dụ của task hơn với cùng lượng tính toán. Hãy đo cả hai phía: LM loss trên văn bản pre-training giữ lại (held-out) trước và sau (forgetting), và điểm của task. Ở đây, full fine-tuning gpt-tiny trên sentiment với learning rate của compare quên rất nhiều; replay 10% và 30% mỗi batch từ corpus làm giảm mức quên đó, và bảng cho thấy task phải trả giá bao nhiêu."),
];
