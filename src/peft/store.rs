//! Adapters applied to a model, and several adapters on one frozen base.
//!
//! The files themselves (`adapter_config.json` + `adapter_model.safetensors`, tunelab's dialect
//! and PEFT's) are read and written by [`crate::io::adapter`]; this module decides what goes
//! into them ([`adapter_params`]: what the method trains, and nothing else) and applies what
//! they hold to a model, checking every tensor against it. So a LoRA adapter is a few
//! kilobytes next to a base model of megabytes, while a full fine-tune's "adapter" is the whole
//! model again: the file sizes ([`crate::io::adapter::file_size`]) are the storage column of the
//! comparison table.
//!
//! Prefix tuning is saved folded: [`save_adapter`] calls [`Method::finalize`], which runs the
//! reparameterization MLP once and keeps only `prompt_embeddings` (P, 2·L·C). The config then
//! says `reparameterize: false` (the table is what is loaded and, if training resumes, what
//! trains), keeps `hidden` as it was trained, and records that it was folded.
//!
//! ## Switching
//!
//! [`crate::peft::apply`] adds a method's parameters to the store under fixed names, so two
//! adapters of one method cannot live in one [`ParamStore`]. An [`AdapterSet`] therefore gives
//! every adapter a store of its own whose first slots carry the base's names (in the base's
//! order, so every base [`ParamId`], the model's and the task head's, means the same tensor in
//! every store) followed by the adapter's own parameters. The base tensors themselves exist once:
//! [`AdapterSet::activate`] *moves* them (a pointer swap per tensor, no copy) into the chosen
//! adapter's store, except where that adapter has its own value for a base tensor (its task head,
//! a full or BitFit fine-tune), which it keeps in its own store. The base values are never
//! written, so switching back to the base gives them back bit for bit.

use super::method::Method;
use super::registry::apply;
use super::spec::MethodSpec;
use crate::autodiff::{ParamId, ParamStore};
use crate::error::{Error, Result};
use crate::io::adapter::{self, AdapterFiles, WEIGHTS};
use crate::nn::{Hooks, NoHooks, Transformer};
use crate::tensor::{fmt_shape, Float};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use serde_json::Value;
use std::collections::HashSet;
use std::path::Path;

fn data_err(path: &Path, detail: impl Into<String>) -> Error {
    Error::Data {
        path: path.display().to_string(),
        line: 0,
        detail: detail.into(),
    }
}

/// The parameters an adapter file holds, in file order and without repeats: `method.params()`,
/// then `method.frozen()`, then `extra`, then every other parameter of `store` that is trainable
/// (the base parameters full, last-k and BitFit fine-tuning train in place, or a head the caller
/// unfroze).
pub fn adapter_params<F: Float>(
    method: &dyn Method<F>,
    store: &ParamStore<F>,
    extra: &[ParamId],
) -> Result<Vec<ParamId>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for &id in method.params().iter().chain(method.frozen()).chain(extra) {
        if id.index() >= store.len() {
            return Err(Error::Invalid {
                op: "save_adapter",
                detail: format!(
                    "parameter id {} is not in the store ({} parameters)",
                    id.index(),
                    store.len()
                ),
            });
        }
        if seen.insert(id) {
            out.push(id);
        }
    }
    for (id, p) in store.iter() {
        if p.trainable && seen.insert(id) {
            out.push(id);
        }
    }
    Ok(out)
}

/// Writes an adapter into `dir` (created if needed, by [`crate::io::adapter::write`]):
/// `adapter_config.json` with `spec` and `meta`, and `adapter_model.safetensors` with the
/// tensors [`adapter_params`] lists. Both files are written atomically.
///
/// Calls [`Method::finalize`] first (this is the end of training): prefix tuning folds its MLP
/// into `prompt_embeddings` in `store`, and the saved spec says `reparameterize: false`.
pub fn save_adapter<F: Float>(
    dir: &Path,
    spec: &MethodSpec,
    method: &mut dyn Method<F>,
    store: &mut ParamStore<F>,
    extra: &[ParamId],
    meta: Value,
) -> Result<()> {
    if spec.name() != method.name() {
        return Err(Error::Invalid {
            op: "save_adapter",
            detail: format!(
                "the spec is {}, the method is {}",
                spec.name(),
                method.name()
            ),
        });
    }
    method.finalize(store)?;
    let spec = &method.saved_spec(spec);
    let (saved, folded) = match spec {
        MethodSpec::Prefix {
            n_virtual,
            reparameterize: true,
            hidden,
        } => (
            MethodSpec::Prefix {
                n_virtual: *n_virtual,
                reparameterize: false,
                hidden: *hidden,
            },
            true,
        ),
        other => (other.clone(), false),
    };
    let ids = adapter_params(method, store, extra)?;
    let tensors: Vec<(&str, ArrayViewD<'_, F>)> = ids
        .iter()
        .map(|&id| (store.name(id), store.value(id).view()))
        .collect();
    adapter::write(dir, &saved, folded, meta, &tensors)
}

/// `apply`, with a clearer error when the store already holds this method's parameters. The
/// spec is checked against the model first ([`super::limits::check`]), naming the adapter
/// config and its field, before anything is allocated.
fn apply_spec<F: Float>(
    dir: &Path,
    spec: &MethodSpec,
    model: &Transformer,
    store: &mut ParamStore<F>,
    seed: u64,
) -> Result<Box<dyn Method<F>>> {
    check_spec(dir, spec, model)?;
    apply(spec, model, store, seed).map_err(|e| match e {
        Error::Param(name, "already exists") => Error::Invalid {
            op: "load_adapter",
            detail: format!(
                "{}: the store already holds {name}: one store takes one {} adapter \
                 (use AdapterSet to switch between several)",
                dir.display(),
                spec.name()
            ),
        },
        other => other,
    })
}

/// [`super::limits::check`], naming `dir`'s adapter config and the field. A saved config never
/// asks for PiSSA or OLoRA (they are saved converted to plain LoRA): such a config is refused,
/// since applying it would rewrite the base weights.
pub fn check_spec(dir: &Path, spec: &MethodSpec, model: &Transformer) -> Result<()> {
    if let MethodSpec::Lora(c) | MethodSpec::Dora(c) | MethodSpec::LoraFa(c) = spec {
        if c.init_lora_weights.changes_base() {
            return Err(data_err(
                &dir.join(adapter::CONFIG),
                format!(
                    "init_lora_weights = {:?}: an adapter records the plain LoRA it was converted \
                     to when saved; applying {} to a loaded base would rewrite its weights",
                    c.init_lora_weights.name(),
                    c.init_lora_weights.name()
                ),
            ));
        }
    }
    super::limits::check(spec, model).map_err(|l| data_err(&dir.join(adapter::CONFIG), l.detail))
}

/// Matches the file's tensors to `store` (after the method was applied): every tensor must name a
/// parameter of the store and have its shape (`shape_of`, which may differ from the store's own
/// value for base slots of an [`AdapterSet`]); every parameter the method trains or freezes
/// ([`Method::frozen`]) must be in the file. Returns the tensors with their ids.
fn match_tensors<F: Float>(
    path: &Path,
    spec: &MethodSpec,
    method: &dyn Method<F>,
    store: &ParamStore<F>,
    tensors: Vec<(String, ArrayD<F>)>,
    shape_of: impl Fn(ParamId) -> Vec<usize>,
) -> Result<Vec<(ParamId, ArrayD<F>)>> {
    let mut out = Vec::with_capacity(tensors.len());
    for (name, value) in tensors {
        let id = store.id(&name).map_err(|_| {
            data_err(
                path,
                format!(
                    "tensor {name} is not a parameter of this model with {}",
                    spec.name()
                ),
            )
        })?;
        let want = shape_of(id);
        if value.shape() != want.as_slice() {
            return Err(data_err(
                path,
                format!(
                    "tensor {name} has shape {}, the model with {} expects {}",
                    fmt_shape(value.shape()),
                    spec.name(),
                    fmt_shape(&want)
                ),
            ));
        }
        out.push((id, value));
    }
    let present: HashSet<ParamId> = out.iter().map(|(id, _)| *id).collect();
    let required = method
        .params()
        .iter()
        .chain(method.frozen())
        .copied()
        .chain(store.iter().filter(|(_, p)| p.trainable).map(|(id, _)| id));
    for id in required {
        if !present.contains(&id) {
            return Err(data_err(
                path,
                format!(
                    "tensor {} is missing ({} {} it)",
                    store.name(id),
                    spec.name(),
                    if method.frozen().contains(&id) {
                        "uses"
                    } else {
                        "trains"
                    }
                ),
            ));
        }
    }
    Ok(out)
}

/// Loads an adapter saved by [`save_adapter`] onto `model`'s base in `store`: applies the spec
/// (which freezes the base and adds the method's parameters, initialised from `seed`), then sets
/// every tensor of the file by name, checking shapes. The file's tensors end up trainable (so
/// training can resume where it stopped), except those the method keeps frozen
/// ([`Method::frozen`]); everything else is frozen. Returns the spec, the method
/// and the config's `meta`.
///
/// Errors name the file and the tensor: a tensor the model does not have, a wrong shape, or a
/// parameter the method trains that the file lacks. The files are read and checked as far as
/// possible before the store changes; a shape error of a method parameter is found only after
/// the method was applied, so load onto a fresh base after an error. The parameters the method
/// keeps frozen ([`Method::frozen_params`], LoRA-FA's A) stay frozen.
pub fn load_adapter<F: Float>(
    dir: &Path,
    model: &Transformer,
    store: &mut ParamStore<F>,
    seed: u64,
) -> Result<(MethodSpec, Box<dyn Method<F>>, Value)> {
    load_adapter_files(dir, adapter::read::<F>(dir)?, model, store, seed)
}

/// What [`load_adapter`] does once it read the adapter in `dir`: applies `files` (from
/// [`adapter::read`] or, without touching the disk, [`adapter::parse`]) to `model`'s base in
/// `store`, with the same checks; errors name `dir`'s files.
pub fn load_adapter_files<F: Float>(
    dir: &Path,
    files: AdapterFiles<F>,
    model: &Transformer,
    store: &mut ParamStore<F>,
    seed: u64,
) -> Result<(MethodSpec, Box<dyn Method<F>>, Value)> {
    let path = dir.join(WEIGHTS);
    // Base tensors (the head, full / BitFit weights) can be checked before anything changes.
    for (name, value) in &files.tensors {
        if let Ok(id) = store.id(name) {
            if store.value(id).shape() != value.shape() {
                return Err(data_err(
                    &path,
                    format!(
                        "tensor {name} has shape {}, the model expects {}",
                        fmt_shape(value.shape()),
                        fmt_shape(store.value(id).shape())
                    ),
                ));
            }
        }
    }
    let method = apply_spec(dir, &files.spec, model, store, seed)?;
    let values = match_tensors(
        &path,
        &files.spec,
        method.as_ref(),
        store,
        files.tensors,
        |id| store.value(id).shape().to_vec(),
    )?;
    let frozen = method.frozen_params();
    for (id, value) in values {
        store.set_value(id, value)?;
        store.set_trainable(id, !frozen.contains(&id) && !method.frozen().contains(&id));
    }
    Ok((files.spec, method, files.meta))
}

/// One adapter of an [`AdapterSet`].
struct Slot<F: Float> {
    name: String,
    spec: MethodSpec,
    meta: Value,
    method: Box<dyn Method<F>>,
    /// The base's names at ids 0..n_base, then the method's parameters. A base slot holds an
    /// empty placeholder, the base tensor while this adapter is active, or (where `own[i]`)
    /// this adapter's own value.
    store: ParamStore<F>,
    /// Per base tensor: whether this adapter has its own value for it.
    own: Vec<bool>,
    file_bytes: u64,
}

/// One frozen base model and any number of adapters loaded onto it, one of them active at a time.
///
/// ```no_run
/// # use tunelab::peft::store::AdapterSet;
/// # use tunelab::nn::{Input, Transformer};
/// # use tunelab::{ParamStore, Tape};
/// # fn demo(model: Transformer, base: ParamStore<f32>, input: &Input<'_>) -> tunelab::Result<()> {
/// let mut set = AdapterSet::new(model, base);
/// set.load("sentiment", "runs/sentiment/adapter".as_ref(), 0)?;
/// set.load("topic", "runs/topic/adapter".as_ref(), 0)?;
/// set.activate("topic")?;
/// let mut tape = Tape::inference(set.store());
/// let hidden = set.model().forward(&mut tape, set.hooks(), input)?;
/// # Ok(())
/// # }
/// ```
pub struct AdapterSet<F: Float> {
    model: Transformer,
    /// The base tensors while no adapter is active (placeholders where the active one took them).
    base: ParamStore<F>,
    adapters: Vec<Slot<F>>,
    active: Option<usize>,
}

fn placeholder<F: Float>() -> ArrayD<F> {
    ArrayD::zeros(IxDyn(&[0]))
}

impl<F: Float> AdapterSet<F> {
    /// Takes the base model and its parameters (task heads created on it included), frozen.
    pub fn new(model: Transformer, mut base: ParamStore<F>) -> Self {
        base.set_all_trainable(false);
        Self {
            model,
            base,
            adapters: Vec::new(),
            active: None,
        }
    }

    pub fn model(&self) -> &Transformer {
        &self.model
    }

    /// The parameters to run with: the active adapter's store, or the base.
    pub fn store(&self) -> &ParamStore<F> {
        match self.active {
            Some(i) => &self.adapters[i].store,
            None => &self.base,
        }
    }

    /// The hooks to run with: the active adapter's method, or none.
    pub fn hooks(&self) -> &dyn Hooks<F> {
        match self.active {
            Some(i) => self.adapters[i].method.as_ref(),
            None => &NoHooks,
        }
    }

    /// The active adapter's method.
    pub fn method(&self) -> Option<&dyn Method<F>> {
        self.active.map(|i| self.adapters[i].method.as_ref())
    }

    /// The active adapter's name, `None` for the plain base.
    pub fn active(&self) -> Option<&str> {
        self.active.map(|i| self.adapters[i].name.as_str())
    }

    /// The loaded adapters' names, in load order.
    pub fn names(&self) -> Vec<&str> {
        self.adapters.iter().map(|s| s.name.as_str()).collect()
    }

    fn index(&self, name: &str) -> Result<usize> {
        self.adapters
            .iter()
            .position(|s| s.name == name)
            .ok_or_else(|| Error::Invalid {
                op: "adapter set",
                detail: format!(
                    "no adapter named {name:?} (loaded: {})",
                    self.names().join(", ")
                ),
            })
    }

    /// An adapter's spec and `meta`.
    pub fn info(&self, name: &str) -> Result<(&MethodSpec, &Value)> {
        let s = &self.adapters[self.index(name)?];
        Ok((&s.spec, &s.meta))
    }

    /// Bytes of every tensor the set holds in memory: the base's once, plus each adapter's own
    /// (its method's parameters and any base tensor it replaces, such as its task head). The
    /// same whichever adapter is active (activation moves tensors, it copies none).
    pub fn bytes(&self) -> usize {
        self.base.bytes() + self.adapters.iter().map(|s| s.store.bytes()).sum::<usize>()
    }

    /// The size of the adapter's tensor file when it was loaded, in bytes.
    pub fn file_bytes(&self, name: &str) -> Result<u64> {
        Ok(self.adapters[self.index(name)?].file_bytes)
    }

    /// Moves the base tensors the adapter does not replace between the base and its store
    /// (a swap is its own inverse, so this both activates and deactivates).
    fn swap_base(&mut self, i: usize) {
        let slot = &mut self.adapters[i];
        for (k, own) in slot.own.iter().enumerate() {
            if !own {
                let id = ParamId(k);
                std::mem::swap(
                    &mut self.base.get_mut(id).value,
                    &mut slot.store.get_mut(id).value,
                );
            }
        }
    }

    /// Back to the plain base model.
    pub fn deactivate(&mut self) {
        if let Some(i) = self.active.take() {
            self.swap_base(i);
        }
    }

    /// Makes `name` the active adapter. Costs one pointer swap per base tensor; nothing is copied.
    pub fn activate(&mut self, name: &str) -> Result<()> {
        let i = self.index(name)?;
        if self.active == Some(i) {
            return Ok(());
        }
        self.deactivate();
        self.swap_base(i);
        self.active = Some(i);
        Ok(())
    }

    /// Loads the adapter in `dir` under `name` (the active adapter stays active). Returns its
    /// `meta`. Same checks and errors as [`load_adapter`]; on error the set is unchanged.
    pub fn load(&mut self, name: &str, dir: &Path, seed: u64) -> Result<&Value> {
        if self.adapters.iter().any(|s| s.name == name) {
            return Err(Error::Invalid {
                op: "adapter set",
                detail: format!("an adapter named {name:?} is already loaded"),
            });
        }
        let files = adapter::read::<F>(dir)?;
        let file_bytes = adapter::file_size(dir)?;
        let path = dir.join(WEIGHTS);
        let was = self.active;
        self.deactivate();
        let slot = self.build_slot(name, dir, &path, files, file_bytes, seed);
        if let Some(i) = was {
            self.swap_base(i);
            self.active = was;
        }
        self.adapters.push(slot?);
        Ok(&self.adapters.last().expect("just pushed").meta)
    }

    /// Builds an adapter's store; the base must be inactive (all base tensors in `self.base`).
    fn build_slot(
        &mut self,
        name: &str,
        dir: &Path,
        path: &Path,
        files: AdapterFiles<F>,
        file_bytes: u64,
        seed: u64,
    ) -> Result<Slot<F>> {
        let n_base = self.base.len();
        let mut store = ParamStore::new();
        for (_, p) in self.base.iter() {
            store.add(p.name.clone(), placeholder(), false)?;
        }
        // The method may read base values while it is applied (DoRA's initial magnitudes,
        // prompt tuning's vocabulary init): lend it the base tensors, then take them back.
        let swap_all = |base: &mut ParamStore<F>, store: &mut ParamStore<F>| {
            for k in 0..n_base {
                let id = ParamId(k);
                std::mem::swap(&mut base.get_mut(id).value, &mut store.get_mut(id).value);
            }
        };
        swap_all(&mut self.base, &mut store);
        let method = apply_spec(dir, &files.spec, &self.model, &mut store, seed);
        swap_all(&mut self.base, &mut store);
        let method = method?;
        let base = &self.base;
        let values = match_tensors(
            path,
            &files.spec,
            method.as_ref(),
            &store,
            files.tensors,
            |id| {
                if id.index() < n_base {
                    base.value(id).shape().to_vec()
                } else {
                    store.value(id).shape().to_vec()
                }
            },
        )?;
        let mut own = vec![false; n_base];
        let frozen = method.frozen_params();
        for (id, value) in values {
            if id.index() < n_base {
                own[id.index()] = true;
            }
            store.get_mut(id).value = value;
            store.set_trainable(id, !frozen.contains(&id) && !method.frozen().contains(&id));
        }
        Ok(Slot {
            name: name.to_string(),
            spec: files.spec,
            meta: files.meta,
            method,
            store,
            own,
            file_bytes,
        })
    }

    /// Unloads an adapter (the base becomes active if it was).
    pub fn remove(&mut self, name: &str) -> Result<()> {
        let i = self.index(name)?;
        if self.active == Some(i) {
            self.deactivate();
        }
        let was = self.active.take();
        if let Some(j) = was {
            // Indices after i shift down by one; the base tensors stay where they are.
            self.active = Some(if j > i { j - 1 } else { j });
        }
        self.adapters.remove(i);
        Ok(())
    }

    /// Deactivates and gives back the base model and its parameters.
    pub fn into_base(mut self) -> (Transformer, ParamStore<F>) {
        self.deactivate();
        (self.model, self.base)
    }
}
