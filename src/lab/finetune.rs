//! Fine-tuning one method on one task, end to end: load a base, bind the task, apply the method,
//! train with the Trainer, evaluate on the test split, save the adapter.

use crate::autodiff::ParamStore;
use crate::data::lm::WORLD_SEED;
use crate::data::loaders::DataFiles;
use crate::data::tasks::{self, Task, TaskShape};
use crate::data::tokenizer::Tokenizer;
use crate::data::world::World;
use crate::error::{invalid, Error, Result};
use crate::io::{checkpoint, hf};
use crate::nn::quantize::{quantize_base, BaseDtype, QuantReport};
use crate::peft::{self, Method, MethodSpec};
use crate::train::progress::Progress;
use crate::train::task::{TaskData, TaskModel};
use crate::train::trainer::{self, Metrics, Split, TrainReport, TrainTask, Training};
use crate::train::TrainingArgs;
use std::path::{Path, PathBuf};

/// Where the shipped base models are: the crate's own `models/`.
pub fn shipped_models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// What `--base` / `--model` accept, for the commands' help.
pub const BASE_HELP: &str = "A shipped base name (gpt-tiny, bert-tiny: always the model shipped in tunelab's own models/,      whatever the current directory holds) or the path of a model directory (anything else; write      ./gpt-tiny for a directory of that name)";

/// Resolves a base model. The name of a shipped one (`gpt-tiny`, `bert-tiny`) always means the
/// model shipped in the crate's own `models/` ([`shipped_models_dir`]), never a directory of that
/// name in the current directory (`./gpt-tiny` or `./models/gpt-tiny` is such a path); anything
/// else is the path of a model directory (with `config.json`).
pub fn resolve_base(base: &str) -> Result<PathBuf> {
    let not_found = |path: &Path, detail: String| Error::Io {
        path: path.display().to_string(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, detail),
    };
    if crate::train::pretrain::Base::ALL
        .iter()
        .any(|b| b.name() == base)
    {
        let d = shipped_models_dir().join(base);
        if d.join(checkpoint::CONFIG).exists() {
            return Ok(d);
        }
        return Err(not_found(
            &d,
            format!("the shipped model {base} is not here (tunelab was built from another checkout); pass a model directory's path instead, e.g. ./models/{base}"),
        ));
    }
    let p = PathBuf::from(base);
    if p.join(checkpoint::CONFIG).exists() {
        return Ok(p);
    }
    Err(not_found(
        &p,
        format!(
            "no model directory (config.json) here; the shipped models are {}",
            crate::train::pretrain::Base::ALL
                .map(|b| b.name())
                .join(", ")
        ),
    ))
}

/// What identifies a fine-tuning run in its checkpoints ([`Training::identity`]): a resume with
/// another method, task, data, base or training subset is refused, naming it.
pub fn run_identity(opts: &FinetuneOptions, adapter: Option<&Path>) -> serde_json::Value {
    let data = match &opts.data {
        None => serde_json::Value::Null,
        Some(DataFiles::One(p)) => serde_json::json!({ "file": p.display().to_string() }),
        Some(DataFiles::Splits {
            train,
            validation,
            test,
        }) => serde_json::json!({
            "train": train.display().to_string(),
            "validation": validation.display().to_string(),
            "test": test.as_ref().map(|t| t.display().to_string()),
        }),
    };
    serde_json::json!({
        "method": serde_json::to_value(&opts.spec).unwrap_or(serde_json::Value::Null),
        "task": opts.task.name(),
        "data": data,
        "train_limit": opts.train_limit,
        "base": opts.base,
        "continued_from": adapter.map(|a| a.display().to_string()),
    })
}

/// Refuses the adapter in `dir` for a run of `task` (when given) on the base `b` named
/// `base_name`, when the adapter records another task or base ([`crate::io::adapter::check_task`],
/// [`crate::io::adapter::check_base`]). Adapters without the record pass.
pub fn check_adapter(
    dir: &Path,
    task: Option<Task>,
    b: &Base,
    base_name: &str,
    task_flag: &str,
) -> Result<()> {
    let (_, meta) = crate::io::adapter::read_config(dir)?;
    if let Some(t) = task {
        crate::io::adapter::check_task(dir, &meta, t.name(), task_flag)?;
    }
    crate::io::adapter::check_base(dir, &meta, &b.model.config, base_name)
}

/// A loaded base: model, weights and tokenizer.
#[derive(Clone)]
pub struct Base {
    pub dir: PathBuf,
    pub model: crate::nn::Transformer,
    pub store: ParamStore<f32>,
    pub tok: Tokenizer,
    /// What loading did beyond a plain copy (a BERT head the checkpoint lacks, initialised).
    pub notes: Option<String>,
    /// The parameters the checkpoint did not have, left at their initialisation.
    pub initialised: Vec<String>,
    /// How the block Linears were quantised ([`Base::quantize`]), if they were.
    pub quant: Option<QuantReport>,
}

impl Base {
    /// Stores the block Linears as `dtype` (`--base-dtype`; nothing for f32), keeping what was
    /// measured in [`Base::quant`].
    pub fn quantize(&mut self, dtype: BaseDtype) -> Result<()> {
        if let Some(r) = quantize_base(&self.model, &mut self.store, dtype)? {
            self.quant = Some(r);
        }
        Ok(())
    }

    /// `task`'s model on this base: its head (new parameters in this store) and its data.
    pub fn task_model(
        &mut self,
        task: Task,
        world: World,
        data: TaskData,
        seed: u64,
    ) -> Result<TaskModel> {
        let (model, tok) = (self.model.clone(), self.tok.clone());
        TaskModel::builtin(task, model, &mut self.store, tok, world, data, seed)
    }
}

/// Loads a base: a shipped model or any Hugging Face GPT-2 / BERT directory
/// ([`crate::io::hf`]), with its `tokenizer.json` or `vocab.txt`.
pub fn load_base(base: &str) -> Result<Base> {
    let dir = resolve_base(base)?;
    let loaded = hf::load::<f32>(&dir)?;
    let tok = hf::load_tokenizer(&dir)?;
    Ok(Base {
        notes: loaded.notes(),
        initialised: loaded.initialised,
        quant: None,
        dir,
        model: loaded.model,
        store: loaded.store,
        tok,
    })
}

/// The data of a built-in task, or of a user's files in that task's shape
/// ([`loaders::DataFiles`]): one file split 80/10/10 in file order, or the user's own train,
/// validation and test files. Validation (what evaluation during training and `tunelab sweep`
/// score) and test (scored once, at the end) never share an example unless the user passes the
/// same file for both ([`loaders::DataFiles::warnings`]).
///
/// The built-in splits are always those of [`tasks::DATA_SEED`]: a run's seed varies its
/// initialisation, data order and dropout, never the examples, so runs with different seeds
/// are scored on the same test set.
pub fn task_data(
    task: Task,
    data: Option<&DataFiles>,
    train_limit: Option<usize>,
) -> Result<(TaskData, World)> {
    let world = World::generate(WORLD_SEED);
    let mut d = match data {
        None => {
            let s = tasks::build(task, &world, tasks::DATA_SEED);
            TaskData {
                train: s.train,
                validation: s.validation,
                test: s.test,
                ..TaskData::default()
            }
        }
        Some(files) => {
            let s = files.load(task.shape())?;
            TaskData {
                train: s.train,
                validation: s.validation,
                test: s.test,
                sources: s.sources,
                max_len: None,
            }
        }
    };
    if let Some(n) = train_limit {
        d.train.truncate(n);
    }
    Ok((d, world))
}

/// Everything `tunelab finetune` needs.
#[derive(Debug, Clone)]
pub struct FinetuneOptions {
    pub base: String,
    pub task: Task,
    /// The user's data (`--data`, or `--train-file` and its siblings); `None`: the built-in
    /// splits.
    pub data: Option<DataFiles>,
    pub spec: MethodSpec,
    pub args: TrainingArgs,
    pub train_limit: Option<usize>,
    pub resume: bool,
    /// How the base's block Linears are stored while training (`--base-dtype`; nf4 with LoRA
    /// is QLoRA).
    pub base_dtype: BaseDtype,
}

/// What a fine-tuning run measured.
pub struct FinetuneResult {
    pub report: TrainReport,
    pub test: Metrics,
    pub summary: String,
    pub trainable: usize,
    pub total: usize,
    pub adapter_dir: PathBuf,
    /// How the base was quantised (`--base-dtype`), measured.
    pub quant: Option<QuantReport>,
}

/// Binds a task to a loaded base and applies a method; returns the task model and the method.
pub fn prepare(
    base: &mut Base,
    task: Task,
    data: TaskData,
    world: World,
    spec: &MethodSpec,
    seed: u64,
) -> Result<(TaskModel, Box<dyn Method<f32>>)> {
    let tm = base.task_model(task, world, data, seed)?;
    if tm.labels.is_empty() && !matches!(task.shape(), TaskShape::Span | TaskShape::Generation) {
        return invalid("finetune", "the task has no labels");
    }
    let method = peft::apply(spec, &base.model, &mut base.store, seed)?;
    for id in tm.head.params() {
        base.store.set_trainable(id, true);
    }
    Ok((tm, method))
}

/// Binds a task to a loaded base and loads the adapter in `adapter` (a tunelab adapter directory
/// or a PEFT LoRA one) to train it further, as PEFT's
/// `PeftModel.from_pretrained(model, dir, is_trainable=True)`: the method and its options come
/// from the adapter's config, its tensors replace the fresh initialisation, and what trains is
/// exactly what the file holds: the method's parameters, plus the task head if the adapter saved
/// one (tunelab saves it; PEFT's `modules_to_save`), plus the base weights a full or BitFit
/// fine-tune changed. A head the file lacks stays frozen at its initialisation, as in PEFT.
///
/// `spec`, when given, is the method the caller asked for: an error naming both if the adapter
/// holds another one.
pub fn prepare_continued(
    base: &mut Base,
    task: Task,
    data: TaskData,
    world: World,
    adapter: &Path,
    spec: Option<&MethodSpec>,
    seed: u64,
) -> Result<(TaskModel, Box<dyn Method<f32>>, MethodSpec)> {
    let (saved, meta) = crate::io::adapter::read_config(adapter)?;
    crate::io::adapter::check_task(adapter, &meta, task.name(), "--task")?;
    crate::io::adapter::check_base(
        adapter,
        &meta,
        &base.model.config,
        &base.dir.display().to_string(),
    )?;
    if let Some(asked) = spec {
        if asked.name() != saved.name() {
            return invalid(
                "finetune",
                format!(
                    "--method {} was given, but the adapter {} holds {}: drop --method to train it further",
                    asked.name(),
                    adapter.display(),
                    saved.name()
                ),
            );
        }
    }
    let tm = base.task_model(task, world, data, seed)?;
    let (spec, method, _) =
        crate::peft::store::load_adapter(adapter, &base.model, &mut base.store, seed)?;
    Ok((tm, method, spec))
}

/// A method trained on a task: the base (with the method's parameters in its store), the bound
/// task, the method and the Trainer's report.
pub struct Trained {
    pub base: Base,
    pub tm: TaskModel,
    pub method: Box<dyn Method<f32>>,
    pub report: TrainReport,
    pub summary: String,
    pub trainable: usize,
    pub total: usize,
}

/// Loads the base, binds the task, applies the method and trains: what `finetune` and `compare`
/// share.
pub fn train_method(opts: &FinetuneOptions, progress: &mut dyn Progress) -> Result<Trained> {
    train_method_from(opts, None, progress)
}

/// [`train_method`], or with `adapter` the adapter in that directory trained further
/// ([`prepare_continued`]; `opts.spec` must then name the adapter's method).
pub fn train_method_from(
    opts: &FinetuneOptions,
    adapter: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<Trained> {
    let mut base = load_base(&opts.base)?;
    base.quantize(opts.base_dtype)?;
    let (mut data, world) = task_data(opts.task, opts.data.as_ref(), opts.train_limit)?;
    data.max_len = opts.args.max_len;
    let (tm, method) = match adapter {
        None => prepare(
            &mut base,
            opts.task,
            data,
            world,
            &opts.spec,
            opts.args.seed,
        )?,
        Some(dir) => {
            let (tm, method, _) = prepare_continued(
                &mut base,
                opts.task,
                data,
                world,
                dir,
                Some(&opts.spec),
                opts.args.seed,
            )?;
            (tm, method)
        }
    };
    let summary = base.store.trainable_summary();
    let (trainable, total) = (base.store.num_trainable(), base.store.num_params());
    let mut mults = method.lr_multipliers();
    mults.extend(trainer::head_lr_multipliers(&opts.args, &tm.head.params()));
    let opt = trainer::adamw(&opts.args, &base.store, &mults)?;
    let report = trainer::train(
        Training::new(&opts.args, &tm, &mut base.store)
            .hooks(method.as_ref())
            .optimizer(Box::new(opt))
            .resume(opts.resume)
            .identity(run_identity(opts, adapter))
            .progress(progress),
    )?;
    Ok(Trained {
        base,
        tm,
        method,
        report,
        summary,
        trainable,
        total,
    })
}

/// Fine-tunes, evaluates on the test split and saves the adapter. With
/// `load_best_model_at_end`, the Trainer has restored the best evaluation's weights by then, so
/// the test score and the adapter are the best model's.
pub fn finetune(opts: &FinetuneOptions, progress: &mut dyn Progress) -> Result<FinetuneResult> {
    finetune_from(opts, None, progress)
}

/// [`finetune`], or with `adapter` the adapter in that directory trained further (`finetune
/// --adapter DIR`; see [`prepare_continued`]). The adapter saved at the end is the continued
/// one, under `output_dir/adapter` (the input directory is never written). It records the task,
/// the base (as given, resolved, and its architecture) for [`check_adapter`].
///
/// An interrupted run ([`TrainReport::interrupted`]: a signal, a stop request) ends at its
/// checkpoint: nothing is scored on test (`test` is empty) and no adapter is written.
pub fn finetune_from(
    opts: &FinetuneOptions,
    adapter: Option<&Path>,
    progress: &mut dyn Progress,
) -> Result<FinetuneResult> {
    let Trained {
        mut base,
        tm,
        mut method,
        report,
        summary,
        trainable,
        total,
    } = train_method_from(opts, adapter, progress)?;
    let adapter_dir = opts.args.output_dir.join("adapter");
    if report.interrupted {
        return Ok(FinetuneResult {
            report,
            test: Metrics::new(),
            summary,
            trainable,
            total,
            adapter_dir,
            quant: base.quant.clone(),
        });
    }
    let test = TrainTask::<f32>::evaluate(
        &tm,
        &base.store,
        method.as_ref(),
        Split::Test,
        opts.args.max_eval_examples,
        opts.args.eval_batch_size,
    )?;
    let mut meta = serde_json::json!({
        "task": opts.task.name(),
        "base": base.dir.display().to_string(),
        "base_name": opts.base,
        "base_config": crate::io::adapter::base_record(&base.model.config),
        "test": test,
    });
    if let Some(dir) = adapter {
        meta["continued_from"] = dir.display().to_string().into();
    }
    if let Some(best) = &report.restored_best {
        meta["best_step"] = best.step.into();
    }
    crate::peft::store::save_adapter(
        &adapter_dir,
        &opts.spec,
        method.as_mut(),
        &mut base.store,
        &tm.head.params(),
        meta,
    )?;
    Ok(FinetuneResult {
        report,
        test,
        summary,
        trainable,
        total,
        adapter_dir,
        quant: base.quant.clone(),
    })
}

/// Evaluates a base (and optionally an adapter saved by `finetune`) on a task's test split.
pub fn evaluate(
    base: &str,
    adapter: Option<&Path>,
    task: Task,
    max_eval_examples: usize,
    seed: u64,
    dtype: BaseDtype,
) -> Result<Metrics> {
    let mut b = load_base(base)?;
    b.quantize(dtype)?;
    if let Some(dir) = adapter {
        check_adapter(dir, Some(task), &b, base, "--task")?;
    }
    let (data, world) = task_data(task, None, None)?;
    let tm = b.task_model(task, world, data, seed)?;
    let method: Box<dyn Method<f32>> = match adapter {
        Some(dir) => crate::peft::store::load_adapter(dir, &b.model, &mut b.store, seed)?.1,
        None => Box::new(crate::peft::full::Full { last_k: None }),
    };
    TrainTask::<f32>::evaluate(
        &tm,
        &b.store,
        method.as_ref(),
        Split::Test,
        max_eval_examples,
        32,
    )
}

/// Generates a continuation of `prompt` with a decoder base (and optionally an adapter).
pub fn generate_text(
    base: &str,
    adapter: Option<&Path>,
    prompt: &str,
    opts: &crate::nn::generate::GenerateOptions,
    seed: u64,
    dtype: BaseDtype,
) -> Result<String> {
    let mut b = load_base(base)?;
    b.quantize(dtype)?;
    if let Some(dir) = adapter {
        check_adapter(dir, None, &b, base, "--task")?;
    }
    let method: Box<dyn Method<f32>> = match adapter {
        Some(dir) => crate::peft::store::load_adapter(dir, &b.model, &mut b.store, seed)?.1,
        None => Box::new(crate::peft::full::Full { last_k: None }),
    };
    let ids: Vec<usize> = b
        .tok
        .encode(prompt, false)?
        .into_iter()
        .map(|i| i as usize)
        .collect();
    if ids.is_empty() {
        return invalid("generate", "the prompt is empty");
    }
    let mut opts = opts.clone();
    opts.eos = b.tok.eos_id().map(|e| e as usize);
    opts.pad = b.tok.pad_id().unwrap_or(0) as usize;
    let out = crate::nn::generate::generate(&b.model, &b.store, method.as_ref(), &[ids], &opts)?;
    let ids: Vec<u32> = out[0].iter().map(|&i| i as u32).collect();
    b.tok.decode(&ids, true)
}
