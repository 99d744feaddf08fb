//! `tunelab interview N`: interview questions on fine-tuning, each with a concise answer and an
//! experiment that backs it, run on the spot. Questions 1–5 are the notes' own (section 9); the
//! others are what interviewers ask next. Some answers run a pitfall's experiment
//! ([`crate::lab::pitfall`]): the evidence is the same. Questions 18–22 ([`alignment`]) are on
//! what follows supervised fine-tuning: DPO, the reference and β, PPO and GRPO, reward hacking
//! and the Bradley–Terry reward model. Questions 23–30 ([`methods`]) are on the newer PEFT
//! methods (LoHa, LoKr, VeRA, AdaLoRA, LoRA-FA, PiSSA and OLoRA), merging adapters, NEFTune and
//! serving many adapters from one base. Questions 31–35 ([`data`]) are on knowledge, data and
//! forgetting: fine-tuning against retrieval, the KV cache, chat templates and packing, noisy
//! labels, and replaying pre-training data. Questions 36–40 ([`systems`]) are on the systems side
//! and on evaluation: gradient checkpointing, mixed precision, ZeRO/FSDP, seeds and intervals,
//! and choosing learning rates.
//!
//! The answers are prose; every number printed below them comes from the experiment's run.
//!
//! Every question also has a Vietnamese translation (the notes tunelab grew from are
//! Vietnamese): each topic module holds a `VI` list of (number, question, answer), and
//! [`vietnamese`] looks a number up across them; `tunelab interview N --lang vi` prints it. Only
//! the question and the answer are translated: the experiment's tables and claims stay English.

pub mod alignment;
pub mod basics;
pub mod data;
pub mod lora;
pub mod methods;
pub mod systems;
pub mod training;

use super::evidence::{over_seeds, Judged, Judgement, Mode};
use super::pitfall;
use crate::error::{Error, Result};
use crate::train::progress::Progress;

/// One question: its number, the question, a concise answer, and what the experiment does.
#[derive(Debug, Clone, Copy)]
pub struct Question {
    pub number: usize,
    pub question: &'static str,
    pub answer: &'static str,
    pub experiment: &'static str,
}

const fn q(
    number: usize,
    question: &'static str,
    answer: &'static str,
    experiment: &'static str,
) -> Question {
    Question {
        number,
        question,
        answer,
        experiment,
    }
}

/// Every question, in order.
pub const QUESTIONS: &[Question] = &[
    q(1, "What is fine-tuning, and why fine-tune an LLM instead of training one?",
      "Fine-tuning continues training a pre-trained model on a task's data, starting from its weights (with a new head if the task needs one). Pre-training on a large corpus already taught the model language and facts; a small task dataset can then teach the task, which it could never teach a model starting from random weights. It costs a tiny fraction of pre-training.",
      "full fine-tuning of the shipped gpt-tiny versus the same architecture from random weights, same data, steps and learning rate"),
    q(2, "Compare full fine-tuning, adapters, LoRA and prompt tuning.",
      "Full fine-tuning updates every weight: usually the best score, but a full copy per task, optimizer state for every weight, and the most forgetting. Adapters insert small bottleneck layers and train only those; LoRA adds a low-rank update B·A beside chosen weight matrices and can be merged away for serving; prompt tuning learns a few input embeddings and touches nothing inside the model. The parameter-efficient methods train well under 5% of the weights, store megabytes instead of gigabytes per task, and step faster because frozen weights need no weight gradients; on large models they may trail full fine-tuning in score, prompt tuning most. At gpt-tiny's scale that ranking is not measurable: scored on 32 to 200 test examples (a binomial standard error of 3 to 9 points), full fine-tuning scores no higher than LoRA on most seeds and prompt tuning is not reliably below it; the claims count the seeds. What the parameter-efficient methods reliably buy here is the parameter count, the storage and the step time.",
      "tunelab compare on sentiment with a small budget: trainable parameters, step time and score per method"),
    q(3, "How does the loss for fine-tuning an LM differ from a classification loss?",
      "Classification puts a head on a pooled hidden state and takes cross-entropy against one label per sequence, averaged over the N sequences. Causal LM fine-tuning takes cross-entropy at every position against the next token, L = -Σ_t log P(y_t | y_<t, X), so each sequence contributes as many terms as it has target tokens; trainers average over target tokens. In instruction tuning the prompt's tokens are masked out (label -100), so only the response is learned.",
      "both losses computed on one batch of gpt-tiny: targets counted, per-sequence versus per-token means, and the loss with and without the prompt masked"),
    q(4, "How do you avoid overfitting when the dataset is small?",
      "Watch a validation set: when training loss keeps falling while validation loss rises, the model is memorising. The guard that works every time is to stop early at the best validation loss (and keep that checkpoint). The textbook's other remedies are regularising (weight decay, dropout), training fewer parameters (LoRA, adapters), a lower learning rate or fewer epochs, and more or augmented data; measure them rather than trust them. On 8 to 32 examples here they do not stop the memorising: weight decay 0.1 shrinks each weight by only lr × 0.1 per step and lowers the final validation loss clearly in some seeds, not all; dropout 0.1 ended higher on every seed; LoRA at its usual learning rate memorises a few dozen examples about as fast as full fine-tuning, lower on some seeds and higher on others. With this little data, only more data and stopping early really help.",
      "the overfit pitfall: full fine-tuning on a handful of examples, then early stopping, weight decay, dropout and LoRA"),
    q(5, "When should you keep the model frozen and tune only prefixes or adapters?",
      "When you serve many tasks from one base (each task is a small file, the base is shared), when memory is short (no gradients or optimizer state for the base), when the model must keep its general abilities (a frozen base forgets less), and when data is scarce (few parameters to fit). Here, on 32 examples, the frozen-base methods forget less than full fine-tuning on every seed and score above it on most seeds but not all: a few dozen validation examples cannot rank them reliably. Full fine-tuning is worth it when one task matters most, data is plentiful and the task is far from pre-training.",
      "full fine-tuning, LoRA and prompt tuning on a small training set: adapter file sizes (storage for N tasks), forgetting, score"),
    q(6, "Why does LoRA initialise B to zero (and A randomly)?",
      "So that the update B·A is zero at the start: the adapted model is exactly the pre-trained model at step 0, and training starts from its behaviour instead of from a random perturbation of it. A must be random, not zero: the gradient of B is proportional to A, so with both at zero neither would ever move.",
      "gpt-tiny with LoRA under three initialisations: output difference from the base, held-out LM loss, and the gradients of A and B at step 0"),
    q(7, "What do LoRA's alpha and rank r do, and what does rsLoRA change?",
      "The update is scaled by s = alpha / r. With Adam, each step moves B by about the learning rate per entry, so the update B·A grows like sqrt(r) and s·B·A like alpha / sqrt(r): raising r shrinks the effective update and slows learning. rsLoRA scales by alpha / sqrt(r) instead, so the update's size no longer depends on r and a larger rank can actually help.",
      "a few training steps of LoRA at ranks 2, 8 and 32 with alpha/r and with alpha/sqrt(r) scaling: the size of the learned update s·B·A"),
    q(8, "Which modules should LoRA target?",
      "The original paper adapted only the attention query and value projections; later work (QLoRA among others) found that adapting every linear layer, MLP included, matches full fine-tuning more closely, for more parameters. Which wins depends on the task and the budget: measure. Here, at this budget on sentiment, every linear layer did not score reliably above q,v: the seeds disagree.",
      "LoRA r=8 on q,v, on all attention projections, and on every linear layer: trainable parameters and score after the same steps"),
    q(9, "How many parameters does LoRA add to a given model?",
      "r·(d_in + d_out) per adapted d_in×d_out matrix: A is r×d_in and B is d_out×r. For r=8 on q and v of a model with hidden size C and L layers that is 2·L·8·2C = 32·L·C, a fraction of a percent of a large model.",
      "LoRA applied to gpt-tiny at several ranks and targets, counted in the parameter store and by the formula, and the same formula on LLaMA-7B"),
    q(10, "What is merging a LoRA adapter, and what happens to precision?",
      "Merging adds s·B·A into the frozen weight W, so serving costs exactly a plain model; unmerging subtracts it again. In f32 the merged model matches the unmerged one to rounding error. Merging into a low-precision base (bf16, or a dequantised 4-bit base) rounds W + s·B·A to that precision, and a small update can be largely rounded away.",
      "a briefly trained LoRA on gpt-tiny: merged versus unmerged outputs in f32 and f64, the merge/unmerge round trip, and the update lost when merging into bf16"),
    q(11, "Why does the padding side matter for decoder models?",
      "A decoder generates the next token from the last position. With right padding the short rows' last position is a pad, so batched generation reads the wrong place; with left padding every row ends at the last column. Then the attention mask must hide the pads and position ids must start at each row's first real token, or padded and unpadded outputs differ. For training, right padding with labels ignored on pads is fine.",
      "the padding pitfall: next-token logits and greedy generation of a padded batch versus each prompt alone"),
    q(12, "Why mask the prompt's labels in instruction tuning?",
      "The model should learn to produce responses, not to predict the user's prompts. Setting the prompt's labels to -100 keeps the prompt as context but removes its tokens from the loss; otherwise prompt tokens, often the majority, dominate the loss and the gradient, and the model spends capacity imitating prompts. At gpt-tiny's scale the masked run does not reach a reliably lower response loss: the two runs end within about a tenth of a nat of each other, either way round depending on the seed, likely because the dialogue task's prompts and responses come from the same small world, so predicting prompts also teaches responses. What masking changes measurably is what the loss counts: most of an unmasked batch's targets are prompt tokens.",
      "LoRA on the dialogue task trained with the prompt masked and unmasked: targets per batch, and the response-only validation loss"),
    q(13, "What is catastrophic forgetting, and how do you measure it?",
      "Fine-tuning moves weights toward the new task and away from what pre-training taught, so general abilities degrade. Measure it by scoring the model before and after fine-tuning on held-out data of the original distribution (here the LM loss on unseen pre-training text) or on general benchmarks. High learning rates and full fine-tuning forget most; small learning rates, few steps and parameter-efficient methods forget least.",
      "the lr pitfall: held-out LM loss before and after full fine-tuning at a high and a sane learning rate, and LoRA"),
    q(14, "Why use learning-rate warmup?",
      "At the first steps Adam's second-moment estimates are built from one or two gradients and are noisy, and a pre-trained model's head or adapters are fresh, so full-size steps can throw the weights far from the pre-trained point. Warmup raises the learning rate from zero over the first steps so early updates stay small until the statistics settle. Here, with full fine-tuning of gpt-tiny at lr 1e-3, its effects on the early loss peak, on forgetting and on the score are each smaller than the differences between seeds: warmup is insurance against a bad first step, and on any one small run its benefit is within the noise, so the claims below count the seeds in which each held rather than assert it.",
      "full fine-tuning at lr 1e-3 with and without warmup: early losses, forgetting and score"),
    q(15, "What does gradient clipping do, and when does it matter?",
      "It rescales all gradients together when their global norm exceeds a threshold, keeping the direction and bounding the step. It matters when a loss spike or a deep, badly conditioned network (post-LN without warmup, long RNN-like paths) produces a huge gradient that would throw the weights away; it is cheap insurance, logged as the gradient norm. In the experiment a deep post-LN decoder trained with SGD at a high learning rate blows up on every seed without clipping and trains with it. Pre-LN spreads the gradient evenly over the blocks, but at that learning rate it did not stop every seed from blowing up on its own; clipping did.",
      "the explode pitfall: a deep post-LN decoder trained with and without clipping, versus pre-LN, with gradient norms per layer"),
    q(16, "How much memory does QLoRA need, and why?",
      "QLoRA stores the frozen base in 4-bit NormalFloat: blocks of 64 weights, each with its absmax, each weight the index of the nearest of 16 levels placed at quantiles of a normal distribution, which spend the codes where roughly normal weights actually are. That is 4.5 bits per weight; double quantisation stores the absmax constants in 8 bits too, about 4.127, versus 16 for bf16. LoRA's adapters train in 16 or 32 bits on top, with optimizer state only for them, and the base is dequantised a tile at a time inside each matmul, never kept whole in full precision. Memory is then dominated by the quantised base and the activations: a 65B model fits in one 48 GB GPU. Quantising costs little because the adapters learn on top of the quantised weights. Here, on gpt-tiny's real NF4 base, the model's weights take under a third of the memory of LoRA's f32 base, the held-out LM loss barely moves, and LoRA on it scores as LoRA on f32 does, within an interval over three seeds that is several points wide: a small difference could hide in it. NF4's levels reconstruct the weights better than evenly spaced ones overall, though uniform levels make the largest single error smaller, and at this size the activations, not the weights, dominate a training step's memory.",
      "the memory arithmetic of full fine-tuning, LoRA and QLoRA for 7B and 65B; gpt-tiny's block Linears stored in bf16, NF4 and NF4 with double quantisation (bits per value, reconstruction error, held-out LM loss) beside uniform 4-bit levels in the same blocks; LoRA on the f32 base and QLoRA on the NF4 base trained on sentiment with the same seeds: weight and activation memory and test accuracy with 95% intervals"),
    q(17, "Is gradient accumulation the same as a bigger batch?",
      "Summing the gradients of k micro-batches, each scaled by 1/k, equals the gradient of one k-times larger batch only when every micro-batch's loss is a mean over equally many terms, as a classification loss over equal micro-batches is. For a per-token LM loss the micro-batches hold different numbers of target tokens, so averaging their means weights tokens unequally. Exact accumulation sums the per-token losses and divides by the target count of the whole accumulated batch; tunelab's Trainer does exactly that, as Hugging Face's does with num_items_in_batch, so k micro-batches of b give the loss and gradient of one batch of k·b, for every loss.",
      "gradients of one batch of 16 versus 4 micro-batches of 4, for classification and for the causal LM loss: each micro-batch scaled by 1/k (the naive way) and by its share of the target tokens (what the Trainer does)"),
    q(18, "Derive DPO from the KL-constrained RLHF objective.",
      "RLHF maximises E_{y∼π}[r(x, y)] − β KL(π ‖ π_ref) for each prompt x. Rewritten as −β KL(π ‖ π_ref·exp(r/β)/Z) + β log Z, with Z(x) = Σ_y π_ref(y|x) exp(r(x, y)/β), its maximiser is π*(y|x) = π_ref(y|x) exp(r(x, y)/β) / Z(x), and the optimum's value is β log Z. Solved for the reward: r(x, y) = β log π*(y|x)/π_ref(y|x) + β log Z(x). Z is intractable, but it depends on the prompt only, so it cancels in the Bradley–Terry probability of a preference: P(y_c ≻ y_r) = σ(r(y_c) − r(y_r)) = σ(β log π*/π_ref(y_c) − β log π*/π_ref(y_r)). Maximum likelihood on preference pairs with π in place of π* is DPO: L = −log σ(β h), h = log π/π_ref(y_c) − log π/π_ref(y_r). Its gradient is −β σ(−β h)(∇log π(y_c) − ∇log π(y_r)): raise the chosen response, lower the rejected one, weighted by how wrongly the implicit reward model orders the pair. No reward model and no sampling: the policy is its own reward model.",
      "one prompt with 6 responses and a reward vector: E[r] − β KL maximised by gradient ascent on the tape for three β against the closed form, the implicit rewards against the true reward differences, and DPO's gradient against the formula on the discrete policy (f64) and on gpt-tiny with LoRA (f32)"),
    q(19, "Why a reference model in DPO, and what does β do?",
      "DPO is the KL-constrained RLHF objective solved in closed form: its implicit reward is β log π/π_ref, so the reference is what every response is measured against. It anchors the policy to the fluent SFT model; without it (or with β near 0) nothing stops the policy from pushing log-probabilities anywhere to widen the chosen-rejected gap, and both usually fall (likelihood displacement) while the text degrades. β is the KL weight: the loss −log σ(β h) saturates once β h is a few units, so it asks for a log-ratio margin h of order 1/β: a small β lets the policy move far from the reference, a large one keeps it close and learns less (TRL's default is 0.1). Here the smaller β asked for a larger h and moved the policy's log-probabilities further from the reference on every seed, and DPO lowered the rejected responses at every β and, at β 0.01, the chosen ones too (likelihood displacement). That a too-small β ranks held-out pairs worse does not show at this budget: a few dozen steps cannot drift far enough to hurt, and β 0.01 ranks about as well as 0.1; the cost of small β is the drift, which the pitfall shows over longer runs. The reference also costs memory: with LoRA or another frozen-base method it is the same weights run without the adapters (no bytes); full fine-tuning needs a frozen copy of every weight, or reference log-probabilities precomputed once.",
      "DPO with LoRA on gpt-tiny at β 0.01, 0.1 and 1 (same steps and learning rate) on the world's preference pairs: held-out preference accuracy, reward margin, the change of log π from the reference; and what the reference costs with LoRA and with full fine-tuning"),
    q(20, "Compare DPO, PPO and GRPO.",
      "PPO (the InstructGPT recipe) samples responses, scores them with a learned reward model, and uses a learned value model (the critic) as the baseline for its advantages, with a KL penalty to a frozen reference: four models, two of them trained. GRPO drops the critic: it samples G completions per prompt and takes each one's reward minus the group's mean, divided by the group's std, as its advantage; with a verifiable reward (the program runs, the answer checks) there is no reward model either, so it holds the policy and the reference. DPO needs neither sampling nor a reward model: it trains offline on fixed preference pairs with the policy and the reference, as cheap as supervised fine-tuning per step, but it can only learn from the pairs it is given, while PPO and GRPO learn from the policy's own samples. Data: DPO needs (prompt, chosen, rejected) pairs; GRPO prompts and a reward function, ideally verifiable; PPO prompts and a reward model trained on pairs. By the arithmetic below PPO needs about twice DPO's memory for full fine-tuning (tunelab does not implement PPO: its critic is counted, not run). At scale sampling dominates an RL step (long completions, memory-bound decoding); on gpt-tiny with 16-token programs and a KV cache sampling is cheap: a GRPO step takes longer than a DPO step over as many sequences of the same length (with the quick budget not on every seed), but sampling is only a minority of it, so the claim that it dominates does not hold at this scale.",
      "what each method holds in memory for gpt-tiny and a 7B model (PPO's critic by arithmetic: tunelab does not implement PPO), the measured step time of DPO and GRPO with LoRA on gpt-tiny over as many sequences, sampling's share of a GRPO step, and the data each trained on"),
    q(21, "What does reward hacking look like?",
      "The policy learns what the reward measures rather than what it was meant to measure: the reward curve climbs while the true objective stalls or falls. Common forms: length (learned reward models favour longer answers), format tricks, sycophancy, and exploiting a buggy verifier or test harness. Signs: reward rising faster than held-out quality, completion length or the KL to the reference growing, samples that look odd. Defences: a verifiable reward where possible, a KL penalty to the reference, length normalisation or penalties, reward-model ensembles, and watching samples and held-out metrics rather than the reward curve. Here GRPO on a proxy that likes longer answers, even with a KL penalty, raised the proxy on every seed by making the programs longer until they hit the length limit, and the share of programs that compute the right value fell to about nothing; the same steps spent on the execution reward raised it.",
      "GRPO with LoRA on the code task after a short SFT warm-up, optimising a length proxy, and with the same budget on the true reward (the program computes the right value): both rewards of the samples at every step, and the completion length"),
    q(22, "What is a reward model, and what is the Bradley–Terry model?",
      "A reward model maps a prompt and a response to one number: usually the SFT model with its LM head replaced by a linear head on the last token, trained on comparisons. Bradley–Terry models a comparison as P(y_c ≻ y_r | x) = σ(r(x, y_c) − r(x, y_r)), so training minimises −log σ(r_c − r_r) over the pairs. Only differences are identified, so rewards are defined up to a constant per prompt (TRL's center_rewards_coefficient pins their mean to 0). Judge it on held-out pairs: pairwise accuracy overall and per category, and calibration, whether σ(r_c − r_r) matches how often the preferred response is the chosen one. It learns first whatever separates the pairs most easily. Here evasions and style (rambling, rude) are ranked right by the first evaluation, a quarter of the way in, while wrong facts and wrong programs stay near chance to the end: ranking them means checking the response against the prompt, which this small model does not learn in a hundred steps (in the quick test's twenty steps, which kinds lead at the first evaluation varies with the seed). Confidence means something (pairs with a larger reward gap are right more often), and calibration is roughly right, within 0.1 on most seeds. A policy optimised against such a model can exploit the same shortcuts: reward hacking (question 21).",
      "a reward model (gpt-tiny + LoRA + a scalar head) trained on the world's pairs: held-out pairwise accuracy overall and per kind during training, and σ(r_c − r_r) against the observed accuracy in bins"),
    q(23, "What do LoHa and LoKr's Hadamard and Kronecker products buy over LoRA's B·A?",
      "LoRA's update B·A has rank at most r for r·(d_in + d_out) parameters. LoHa multiplies two such products entry by entry, ΔW = (W1a·W1b) ⊙ (W2a·W2b): twice LoRA's parameters at the same r, but the Hadamard product of two rank-r matrices can reach rank r², so LoHa r=4 costs exactly LoRA r=8's parameters and its update can reach rank 16. LoKr takes a Kronecker product ΔW = W1 ⊗ W2 of two small factors whose shapes multiply to the weight's; its rank is rank(W1)·rank(W2), so a few hundred parameters can make a full-rank update of a 128×128 block. Both come from image-generation fine-tuning (LyCORIS), where a high-rank update at a small file size helps. Rank is capacity, not a score: here the learned LoHa and LoKr updates do have far higher rank than LoRA's at the same or a lower parameter count, but on sentiment with a small budget neither scores reliably above LoRA; the task does not need a high-rank update, and the seeds' spread is larger than any difference.",
      "the parameter count of each form on a 128×128 block by formula and in the store, the numerical rank of ΔW from random factors and of each learned ΔW, and LoRA r=8, LoHa r=4, LoKr r=8 trained on sentiment over seeds with paired intervals"),
    q(24, "How can VeRA train so few parameters, and what does it cost?",
      "VeRA shares one pair of frozen random matrices A (r × d_in) and B (d_out × r) across every adapted layer and trains only two scaling vectors per layer: ΔW = Λb B Λd A, with λd of length r and λb of length d_out. That is r + d_out trainable numbers per adapted matrix against LoRA's r·(d_in + d_out), so r can be large (256 by default) at almost no cost, and the frozen pair is regenerated from a seed or saved once. On LLaMA-7B's q and v that is about 0.28M trainable parameters against 4.2M for LoRA r=8. The cost: the update can only rescale fixed random directions, so each parameter must do more, and VeRA needs a learning rate an order of magnitude higher than LoRA's (compare's sweep on sentiment chose ten times LoRA's rate); the paper reports it matching LoRA on GLUE-size tasks with larger models. Here VeRA does not score reliably below LoRA: the difference sits inside the seeds' noise.",
      "VeRA's and LoRA's trainable parameters by formula and in the store on gpt-tiny, and on LLaMA-7B's shape; the learning-rate grids compare's sweep tried; VeRA and LoRA trained on sentiment over seeds with paired intervals"),
    q(25, "How does AdaLoRA allocate rank, and does it help?",
      "AdaLoRA writes each update in SVD form P·Λ·Q, with P and Q kept near orthogonal by a regulariser and Λ the singular values, and starts every adapted matrix at rank init_r. During training it scores each triplet (Pᵢ, λᵢ, Qᵢ) by a smoothed sensitivity |w·∇w| times its uncertainty, and a budget schedule lowers the total number of triplets kept, cubically, from init_r·n to target_r·n between tinit and T − tfinal; the lowest-scoring triplets anywhere in the model have their λ set to zero. So the rank goes where the loss is most sensitive: some matrices end with more than target_r, others with less, for the same total. Whether that beats a uniform rank is an empirical question. Here the allocator ends with uneven ranks that sum to the budget, and it moves the rank into the value projections and prunes the queries: on a classification task what the values carry matters more than where attention looks. But AdaLoRA does not score reliably above plain LoRA at the same final rank; with 8 adapted blocks and a short run there is little to reallocate, and the seeds' spread is larger than the difference.",
      "AdaLoRA r 8→4 and LoRA r=4 on q,v trained on sentiment over seeds: the budget schedule of the run, the rank each block kept, and the scores with a paired interval"),
    q(26, "What does LoRA-FA save by freezing A?",
      "LoRA-FA keeps A at its random initialisation and trains only B. Half of LoRA's adapter parameters then have no gradient and no Adam state, and backward no longer needs A's gradient, which reads the layer's input x (tokens × d_in): it keeps only the r-wide projection x·Aᵀ. That activation saving is what the paper is about: at large batch and sequence length the activations, not the parameters, dominate a LoRA step's memory. The cost is expressiveness: the update s·B·A lives in the row space of a fixed random A, which is why PEFT projects B's gradient onto the closest update that fixed A can make. Here the parameter, gradient and optimizer memory halve for the adapter as the arithmetic says, the activations measured by the Trainer's ledger are as printed below, and the score stays within LoRA's noise over the seeds.",
      "LoRA and LoRA-FA r=8 on q,v trained on sentiment over seeds: trainable and frozen parameters, gradient, optimizer and activation memory from the Trainer's ledger, and scores with a paired interval"),
    q(27, "Why initialise LoRA from the principal singular vectors (PiSSA) or a QR (OLoRA), and what happens?",
      "Plain LoRA starts at B = 0, so its first steps move in a random low-rank subspace with a tiny update. PiSSA takes the top-r singular triplets of W, puts them in A = √S·Vᵀ and B = U·√S, and replaces the frozen weight by the residual W − s·B·A, so the model is unchanged at step 0 but training adjusts the principal directions, which should converge faster; OLoRA does the same with the first r columns of W's QR decomposition. Because they rewrite the base, neither applies to a quantised base (tunelab refuses, as quantising the residual would break W = residual + B·A); after training they are converted back to a plain LoRA of rank 2r on the original base. Here the step-0 loss equals LoRA's to f32 rounding, and PiSSA's training loss over the first steps is slightly but reliably below LoRA's (the faster start the paper describes, small at this scale); but neither PiSSA nor OLoRA scores reliably above LoRA: the test scores are within the seeds' noise, and OLoRA at its chosen learning rate 9e-3 is the riskiest of the three (a previous session saw a seed diverge there). Moving the principal directions of a small, already competent model is not obviously better than adding a fresh low-rank update.",
      "LoRA, PiSSA and OLoRA r=8 on q,v: the validation loss at step 0, the refusal on an nf4 base, the training loss over the first steps and the test scores over seeds with paired intervals"),
    q(28, "How do you merge adapters (task arithmetic, TIES, DARE), and when does it work?",
      "Merging combines several fine-tuned updates (task vectors τᵢ = ΔWᵢ) into one. Task arithmetic adds them with weights, Σ wᵢτᵢ; it works when the tasks touch different directions and fails when they interfere. TIES trims each τᵢ to its largest entries (density), elects a sign per entry (the sign of the trimmed sum), and averages only the entries that agree with it, so conflicting small updates do not cancel the large ones and an entry one task alone changed is not diluted. DARE drops entries at random with probability 1 − density and rescales the rest by 1/density before merging, which keeps the expected update. For LoRA, merging A and B separately is not merging the updates (B₁A₁ + B₂A₂ ≠ (B₁+B₂)(A₁+A₂)): concatenating the factors is exact (rank n·r), or the summed update can be re-factored by SVD. A task head is never merged. When it works: tasks with distant updates, similar budgets and a shared base; always measure each task's score against its own adapter. Here every merge of a sentiment and an NER adapter scores below the tasks' own adapters on average, while switching adapters per request in one AdapterSet scores exactly as each own adapter: serving both is cheaper than merging them at this size.",
      "a TIES worked example on three small vectors, then LoRA adapters trained on sentiment and NER and merged by task arithmetic (exact and SVD), TIES, DARE-TIES and PEFT's A/B-wise merges: each task's score with its own adapter, by switching, and with each merge, over seeds"),
    q(29, "Why would noise in the embeddings (NEFTune) help instruction tuning?",
      "NEFTune adds uniform noise scaled by α/√(L·d) to the input embeddings during training only (L tokens, d the width), so each token's embedding moves by a vector of norm about α/√(3L). The argument is regularisation: on a small instruction dataset the model overfits to the exact token sequences, and noise forces it to respond to a neighbourhood of each input; Jain et al. report longer, more fluent answers and large AlpacaEval gains on 7B models. Evaluation is without noise. At gpt-tiny's scale it does not help: NEFTune's paired difference from plain LoRA is within the seeds' noise (ROUGE-L on a few dozen dialogue replies), and the reported gains were judged by a model of answer quality on long free-form answers, which a 128-wide model on short synthetic replies does not produce; its noise is also a large share of a small embedding's norm for short sequences.",
      "LoRA on the dialogue task with and without NEFTune (α = 5) over seeds: the noise's norm against gpt-tiny's embedding norm, the test score per arm and the paired difference with its interval"),
    q(30, "How do you serve many fine-tuned variants: one base with N adapters, or N merged copies?",
      "A merged copy per variant costs the whole model's memory N times but runs each request at plain speed. Multi-LoRA serving (S-LoRA, Punica, vLLM's LoRA support) keeps one base in memory and N small adapters, picks the adapter per request, and adds s·x·Aᵀ·Bᵀ beside each adapted Linear; batches mixing adapters use gathered batched kernels (Punica's SGMV) and adapters are paged in and out of GPU memory. The extra work per token is about 2r·(d_in + d_out) multiply-adds per adapted matrix, small against the base's; the memory is one base plus N adapters of a few MB each. For LLaMA-7B in bf16 with 100 adapters of r=16 on q and v, one base with every adapter takes about 15 GB against about 1.35 TB for 100 copies. Here the measured memory follows the arithmetic exactly, and both paths give the same logits to f32 rounding. An adapter's extra multiply-adds are about 2% of gpt-tiny's and about 0.1% of a 7B model's, so what multi-LoRA serving really pays is the overhead of many small matmuls and of batches that mix adapters, which S-LoRA's and Punica's kernels are built to remove. The requests per second printed were measured on a loaded 2-core machine and are not a speed claim: they go either way from run to run.",
      "tunelab serve-bench's measurement (one base with N random adapters switched per request against N merged copies: bytes held, requests per second, largest logit difference) and the arithmetic for a 7B base with 100 adapters"),
    q(31, "Should you fine-tune a model to teach it facts, or retrieve them?",
      "Fine-tuning teaches behaviour and form: which answer to give and how (short, in the task's format), and facts it sees often enough it can memorise. It cannot answer a fact it never trained on, and a fact that changes means training again. Retrieval (BM25 or embeddings over a corpus, then a reader or the LLM with the passage in its prompt) supplies the knowledge at answer time: whatever the corpus holds, including facts added after training, with a source to show. So: fine-tune for format, style and skills, retrieve for knowledge, and often both (a model fine-tuned to read retrieved passages). Here, on the world's facts, fine-tuning full gpt-tiny on two phrasings of each trained fact teaches the short-answer form the pre-trained model never gives; asked in a new draw of phrasings, it answers most of the trained facts and few of those it never saw, although pre-training stated them too (the pre-trained model sometimes writes the answer, but never in the short form). BM25 over the pre-training corpus plus an extractive reader trained on the QA task answers the unseen facts far better than the fine-tuned model, and as well as the trained ones once the top passage holds the answer; its ceiling is how often the top passage does (about two times in three) times the reader's accuracy.",
      "BM25 over the 20,000 pre-training documents and an extractive reader (gpt-tiny + span head trained on the QA task), against full fine-tuning on questions about some facts, asked closed-book; exact match on those facts and on held-out facts, with intervals over seeds"),
    q(32, "What is the KV cache, and how much memory does it take?",
      "In a decoder the keys and values of a position depend only on the tokens up to it, so during generation they never change: the cache keeps every layer's keys and values, and each new token runs only its own row through the model, attending to the cached keys. Without it each step re-runs the whole sequence, so generating n tokens costs O(n²) token-passes instead of O(n). Its size per sequence is 2 (keys and values) · layers · heads · head_dim · tokens · bytes per value: for LLaMA-7B in fp16 at 4,096 tokens, 2 · 32 · 32 · 128 · 4096 · 2 bytes = 2 GiB, a seventh of its 12.6 GiB of fp16 weights, so a batch of seven such sequences holds as much cache as weights: that is why long contexts and large batches are memory-bound and why multi-query and grouped-query attention (fewer key/value heads), cache quantisation and paged caches exist. The cache changes nothing in the result: generation with and without it gives the same tokens.",
      "gpt-tiny's cache after a prefill measured against the formula; greedy generation with and without the cache (same tokens asserted), the matrix-product FLOPs each counted by the kernels for two lengths, wall times under load, and LLaMA-7B's cache at 4k by the formula"),
    q(33, "What is a chat template, why must the end token be trained, and how does packing work?",
      "A chat template turns a conversation into the one token sequence the model is trained on: role markers (here \"User:\" and \"Assistant:\"), the turns, and an end-of-turn token after each assistant reply. Training masks the prompt's tokens (label -100) and trains the reply and the end token: the end token is how the model learns to stop, and generation stops when it is produced. Mask it too and nothing teaches the model to end its answer: a template whose end token is new to the model (ChatML's <|im_end|>, added for fine-tuning) would then never be produced, and generation would run to the length limit. gpt-tiny's end token is not new: it separated every pre-training document, so the pre-trained model already stops after many replies, and with the end token's label masked the fine-tuned model keeps much of that habit; the table gives both stop rates and the claim says whether training the end token made a difference measurable over the seeds. Packing concatenates several short examples into one row of the full length instead of padding each to the longest, so no compute is spent on pads. Done naively, a token attends to the examples before it and its positions continue from them, so the loss is not the example's own; with cross-document masking (a block-diagonal causal mask, positions restarting at 0 per example) each packed example's loss equals its unpacked loss exactly, and only the padding is saved.",
      "the dialogue template rendered with its masked and trained tokens; LoRA on dialogue with the end token trained and with its label masked: share of prompts that stop within 40 tokens, over seeds; the same examples packed into rows of 128 with and without the document mask: per-example losses against unpacked (f64), and the pad share of padded batches against packed rows"),
    q(34, "What do noisy labels do to fine-tuning, and what helps?",
      "A model fits the flipped labels along with the true ones: clean patterns are learned first, and the noise is memorised later, so test accuracy falls as training goes on and as the noise share grows. What helps: cleaning the data (the best fix: relabel, or drop examples the model confidently disagrees with), a clean validation set with early stopping (stop before the noise is memorised), label smoothing (targets of (1 − ε)·onehot + ε/K stop the push toward certainty on any label, flipped ones included), and robust losses or fewer trainable parameters. Measure them: here on the sentiment task a short full fine-tune of gpt-tiny is scored on a clean test set over seeds; the table says how much 10% and 30% flipped labels cost at this budget and whether smoothing or early stopping got any of it back, with intervals several points wide, so small effects do not show.",
      "full fine-tuning on sentiment with 0%, 10% and 30% of the training labels flipped, and at 30% with label smoothing 0.2 and with early stopping on the clean validation split; test accuracy with intervals over seeds, differences paired by seed"),
    q(35, "How do you reduce forgetting by mixing pre-training data back in?",
      "Replay (rehearsal): a share of every batch is text of the original distribution, trained with the original loss (here the causal LM loss on pre-training windows), so each step's gradient keeps pulling the weights toward what pre-training taught while the task pulls them away. It is the oldest defence against catastrophic forgetting, used in instruction tuning as pre-training mix (InstructGPT's PPO-ptx) and in continual pre-training. The price is fewer task examples per step at the same compute. Measure both sides: the LM loss on held-out pre-training text before and after (forgetting) and the task's score. Here, full fine-tuning of gpt-tiny on sentiment at compare's learning rate forgets a lot; replaying 10% and 30% of each batch from the corpus lowers that forgetting, and the table shows what it costs the task.",
      "full fine-tuning on sentiment at compare's learning rate with 0%, 10% and 30% of each batch replaced by pre-training windows (the Replay objective wrapper): forgetting on held-out text and test accuracy, with intervals over seeds"),
    q(36, "What does gradient checkpointing trade?",
      "Memory for compute. Backward needs every layer's activations; normally the forward keeps them all, so activation memory grows with depth (O(L) layers' worth). With checkpointing each block keeps only its input and backward runs that block's forward again just before its backward: memory falls to L block inputs plus one block's activations at a time, and a step costs one more forward of the blocks. A forward is about 2N FLOPs per token and backward 4N, so the extra forward adds about a third (6N → 8N). The gradients do not change: the recomputation replays the same ops on the same inputs with the same dropout masks, so they are bit for bit the same. It is how long sequences and big batches fit; Hugging Face turns it on with gradient_checkpointing=True. Here, in an f64 decoder, the gradients are bit-identical, each extra layer holds about 5% of what it holds without checkpointing (its input), and backward reruns every block once. At one or two blocks the recomputed block's own tape, which keeps everything while it runs, makes the peak higher than not checkpointing at all: it pays from a few blocks on. The step times printed are measured on a shared machine; the third more compute is the arithmetic's.",
      "a GPT decoder at several depths, one step with and without checkpointing on the tape: bytes held, blocks recomputed, ops recorded and the largest gradient difference (f64); the Trainer's gradient_checkpointing on gpt-tiny: activation memory, losses and step time; tunelab estimate's arithmetic for 7B"),
    q(37, "How does mixed-precision training work, and why does fp16 need loss scaling when bf16 does not?",
      "Forward and backward run in 16 bits (half the memory traffic, tensor-core speed) while an f32 master copy of the weights takes the optimizer's updates. fp16 has 10 mantissa bits but only 5 exponent bits: normals stop at 2^-14 ≈ 6e-5 and subnormals at 2^-24 ≈ 6e-8, and many gradient entries are smaller, so they flush to zero or keep only a few bits. Loss scaling multiplies the loss by S (so every gradient by S, by linearity) to lift them into range, and divides by S in f32 before the update; dynamic scaling (PyTorch's GradScaler) raises S until a gradient overflows to inf, skips that step and halves S. bf16 keeps f32's 8 exponent bits (7 mantissa bits), so its range is f32's and nothing underflows: no scaling needed, at the price of coarser rounding. The master weights matter in both: a weight near 0.05 in bf16 has a spacing of about 2^-12 ≈ 2.4e-4, so an update of 1e-4 added to it rounds away; kept in f32 it accumulates. Here, on the gradients of one real step of gpt-tiny, f16 without scaling flushed some nonzero entries to zero and left more as subnormals with few bits left; the dynamic scale lifted nearly all of them into range without overflowing, and bf16 flushed none. Added to weights held in bf16, most of a 1e-5 step's updates vanish, far fewer in f16; f32 master weights keep them all.",
      "the gradients of one full fine-tuning step of gpt-tiny through f16 (round to nearest even, written here) at scales 1, 2^8, 2^16, 2^24 and a dynamic scale, and through bf16: shares flushed to zero, subnormal and overflowed; one AdamW step added to weights held in f32, f16 and bf16: the share of updates lost"),
    q(38, "How much memory per GPU do ZeRO and FSDP need?",
      "Mixed-precision Adam holds 2Ψ bytes of 16-bit weights, 2Ψ of gradients and KΨ (K = 12: f32 master weights, momentum, variance) of optimizer state: 16Ψ, on every GPU under plain data parallelism. ZeRO partitions these states over the N GPUs: stage 1 the optimizer states (4Ψ + 12Ψ/N), stage 2 the gradients too (2Ψ + 14Ψ/N), stage 3 the parameters too (16Ψ/N); PyTorch FSDP's full shard is stage 3. For 7.5B on 64 GPUs that is 120, 31.4, 16.6 and 1.9 GB. Stages 1 and 2 communicate what data parallelism does (2Ψ per step: the gradients reduce-scattered, the updated parameters all-gathered); stage 3 all-gathers each layer's parameters before its forward and again before its backward, 3Ψ, 1.5 times. Activations are not partitioned. With LoRA the optimizer state and gradients are tiny already: stages 1 and 2 save almost nothing, and only sharding the frozen base (stage 3) shrinks what a GPU holds. In the table below 70B's full fine-tuning states (1.1 TB) fit 80 GB GPUs only at stage 3, and 7B's LoRA states barely move from stage 0 to stage 2, then fall eightfold at stage 3 on 8 GPUs.",
      "tunelab estimate's ZeRO arithmetic: the paper's Figure 1 recomputed, then 7B and 70B on 8 and 64 GPUs at stages 0 to 3, full fine-tuning beside LoRA, with the elements communicated per step"),
    q(39, "Why does one fine-tuning run prove nothing, and how do you compare two methods?",
      "A run's score mixes the method with the luck of its seed (head and adapter initialisation, data order, dropout) and of the test set (a binomial standard error of √(p(1−p)/n): 2.9 points at 70% on 250 examples). Run each configuration on k seeds and report the mean with a t-interval over seeds, mean ± t(0.975, k−1)·s/√k; with 3 seeds t is 4.3, the honest price of few runs. To compare two methods, run them on the same seeds and take the per-seed differences: what a seed does to both cancels, and the paired interval is usually much narrower than an unpaired comparison of two independent sets of runs. If the interval still contains 0, the methods are not separated; the number of seeds it would take follows from the spread of the differences, n such that t·sd/√n < gap. Here LoRA and full fine-tuning on sentiment run on the same seeds. Pairing helps only when a seed moves both methods the same way; at gpt-tiny's scale that is not guaranteed: the same seed gives both the same head initialisation and data order, but they train different parameters at different rates, so an order that suits one need not suit the other; when the two methods' scores do not move together over the seeds, the differences vary as much as the scores themselves and the paired interval can come out as wide as the unpaired one, or wider (with 3 seeds it has 2 degrees of freedom, t = 4.3). Separately, on 300 test examples the seed-to-seed spread can be smaller than the test set's binomial error: part of what a seed changes is which examples happen to be right. The output says which happened, and how many seeds the measured gap would need.",
      "LoRA and full fine-tuning on sentiment over the same seeds: test accuracy per seed, the spread, the binomial standard error, the t-interval over seeds, the paired and unpaired intervals of the difference, and the seeds needed to separate the measured gap"),
    q(40, "How do you choose LoRA's learning rate, and the classification head's?",
      "Sweep it on validation, never on test, and do not reuse full fine-tuning's: LoRA trains few parameters from a zero update (B = 0) scaled by alpha/r, so its best learning rate is typically around ten times higher (1e-4 to 1e-3 for LoRA against 1e-5 to 1e-4 for full fine-tuning of a large model). A new classification head starts from random weights while everything else starts from something good, so it can take a higher learning rate of its own (a second parameter group; here --head-learning-rate). LoRA+ does the same inside the adapter: B at a higher learning rate than A (--lora-plus-ratio, 16 in its paper). Whether each helps on a given task is measured with seeds, not assumed. Here a validation sweep on sentiment prints both best rates and their ratio; whether a faster head or LoRA+ scores higher at gpt-tiny's scale and budget is judged on the seeds below rather than assumed. What a 10 times higher head rate reliably does is move the head several times further.",
      "a validation-only sweep of LoRA's and full fine-tuning's learning rates on sentiment (tunelab sweep's library), then LoRA with its fresh head at the base rate and at ten times it, and LoRA+, on the same seeds: validation accuracy and how far the head moved"),
];

/// Every topic module's Vietnamese questions and answers, one module a line.
const VIETNAMESE: &[&[(usize, &str, &str)]] = &[
    basics::VI,
    lora::VI,
    training::VI,
    alignment::VI,
    methods::VI,
    data::VI,
    systems::VI,
];

/// Question `n`'s Vietnamese question and answer, if it has been translated.
pub fn vietnamese(n: usize) -> Option<(&'static str, &'static str)> {
    VIETNAMESE
        .iter()
        .flat_map(|list| list.iter())
        .find(|(number, _, _)| *number == n)
        .map(|&(_, question, answer)| (question, answer))
}

/// The language `tunelab interview` prints its questions and answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Lang {
    /// English (the default).
    #[default]
    En,
    /// Vietnamese: the question and the answer; the experiment's output stays English.
    Vi,
}

impl Lang {
    /// The values `--lang` takes, for messages.
    pub const CHOICES: &'static str = "en (English) or vi (Vietnamese)";

    /// `en` or `vi`; any other value is an error that names it.
    pub fn parse(s: &str) -> Result<Lang> {
        match s {
            "en" => Ok(Lang::En),
            "vi" => Ok(Lang::Vi),
            _ => Err(Error::Invalid {
                op: "interview --lang",
                detail: format!("no language {s:?}: choose {}", Lang::CHOICES),
            }),
        }
    }
}

/// Question `n`'s question and answer in `lang`; an error when `n` is no question, or has no
/// translation into `lang`.
pub fn text(n: usize, lang: Lang) -> Result<(&'static str, &'static str)> {
    let q = question(n)?;
    match lang {
        Lang::En => Ok((q.question, q.answer)),
        Lang::Vi => vietnamese(n).ok_or_else(|| Error::Invalid {
            op: "interview --lang vi",
            detail: format!("question {n} has no Vietnamese translation yet"),
        }),
    }
}

/// The question numbers, for error messages.
pub fn valid_numbers() -> String {
    format!("1 to {}", QUESTIONS.len())
}

/// Question `n` (1-based).
pub fn question(n: usize) -> Result<&'static Question> {
    QUESTIONS
        .iter()
        .find(|q| q.number == n)
        .ok_or_else(|| Error::Invalid {
            op: "interview",
            detail: format!(
                "there is no question {n}; choose one of {} (`tunelab interview` lists them)",
                valid_numbers()
            ),
        })
}

/// Runs question `n`'s experiment: on `seeds` seeds when it trains (side by side where cores
/// allow), once when nothing in it depends on a seed.
pub fn run(
    n: usize,
    mode: Mode,
    seeds: usize,
    progress: &mut (dyn Progress + Send),
) -> Result<Box<dyn Judgement>> {
    question(n)?;
    let p = progress;
    Ok(match n {
        1 => Box::new(over_seeds(seeds, true, p, |s, p| {
            basics::scratch(mode, s, p)
        })?),
        // compare already trains its methods side by side: one seed at a time.
        2 => Box::new(over_seeds(seeds, false, p, |s, p| {
            basics::methods(mode, s, p)
        })?),
        3 => Box::new(Judged::once(basics::losses()?)),
        4 => Box::new(over_seeds(seeds, true, p, |s, p| {
            pitfall::overfit::run(mode, s, p)
        })?),
        5 => Box::new(over_seeds(seeds, true, p, |s, p| {
            basics::frozen(mode, s, p)
        })?),
        6 => Box::new(Judged::once(lora::zero_init()?)),
        7 => Box::new(over_seeds(seeds, true, p, |s, p| {
            lora::scaling(mode, s, p)
        })?),
        8 => Box::new(over_seeds(seeds, true, p, |s, p| {
            lora::targets(mode, s, p)
        })?),
        9 => Box::new(Judged::once(lora::param_count()?)),
        10 => Box::new(over_seeds(seeds, true, p, |s, p| {
            lora::merging(mode, s, p)
        })?),
        11 => Box::new(Judged::once(pitfall::padding::run(mode)?)),
        12 => Box::new(over_seeds(seeds, true, p, |s, p| {
            training::label_masking(mode, s, p)
        })?),
        13 => Box::new(over_seeds(seeds, true, p, |s, p| {
            pitfall::lr::run(mode, s, p)
        })?),
        14 => Box::new(over_seeds(seeds, true, p, |s, p| {
            training::warmup(mode, s, p)
        })?),
        15 => Box::new(over_seeds(seeds, true, p, |s, p| {
            pitfall::explode::run(mode, s, p)
        })?),
        // LoRA and QLoRA on every seed, side by side; the claims are judged once on the
        // intervals over the seeds.
        16 => {
            let e = training::qlora(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        17 => Box::new(Judged::once(training::accumulation()?)),
        18 => Box::new(Judged::once(alignment::dpo_derivation()?)),
        19 => Box::new(over_seeds(seeds, true, p, |s, p| {
            alignment::beta(mode, s, p)
        })?),
        // Step times: one seed at a time, so the two runs timed are not side by side.
        20 => Box::new(over_seeds(seeds, false, p, |s, p| {
            alignment::rl_costs(mode, s, p)
        })?),
        21 => Box::new(over_seeds(seeds, true, p, |s, p| {
            alignment::reward_hacking(mode, s, p)
        })?),
        22 => Box::new(over_seeds(seeds, true, p, |s, p| {
            alignment::reward_model(mode, s, p)
        })?),
        23 => {
            let e = methods::hadamard_kronecker(mode, seeds, p)?;
            Box::new(Judged::pooled(e.trials.seeds.clone(), e))
        }
        24 => {
            let e = methods::vera(mode, seeds, p)?;
            Box::new(Judged::pooled(e.trials.seeds.clone(), e))
        }
        25 => {
            let e = methods::adalora(mode, seeds, p)?;
            Box::new(Judged::pooled(e.trials.seeds.clone(), e))
        }
        26 => {
            let e = methods::lora_fa(mode, seeds, p)?;
            Box::new(Judged::pooled(e.trials.seeds.clone(), e))
        }
        27 => {
            let e = methods::pissa(mode, seeds, p)?;
            Box::new(Judged::pooled(e.trials.seeds.clone(), e))
        }
        28 => {
            let e = methods::merging(mode, seeds, p)?;
            Box::new(Judged::pooled(e.report.seeds.clone(), e))
        }
        29 => {
            let e = methods::neftune(mode, seeds, p)?;
            Box::new(Judged::pooled(e.report.seeds.clone(), e))
        }
        // Memory is counted and the adapters are random from a fixed seed: one run.
        30 => Box::new(Judged::once(methods::serving(mode, p)?)),
        // Each trains on every seed itself, side by side, and is judged on the intervals.
        31 => {
            let e = data::knowledge(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        32 => Box::new(Judged::once(data::kv_cache(mode)?)),
        33 => {
            let e = data::chat_packing(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        34 => {
            let e = data::noisy_labels(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        35 => {
            let e = data::replay(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        36 => Box::new(Judged::once(systems::checkpointing(mode, p)?)),
        37 => Box::new(Judged::once(systems::mixed_precision(mode)?)),
        38 => Box::new(Judged::once(systems::zero_memory()?)),
        // Both methods on every seed, side by side; the claims are judged once on the intervals.
        39 => {
            let e = systems::seeds(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        40 => {
            let e = systems::lr_choice(mode, seeds, p)?;
            Box::new(Judged::pooled(e.seeds.clone(), e))
        }
        _ => unreachable!("question() accepted {n}"),
    })
}
