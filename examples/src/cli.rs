//! The trainer's command-line arguments, with HF `TrainingArguments` names in kebab case
//! (`--learning-rate`, `--lr-scheduler-type`, …), shared by every fine-tuning example.

use std::path::PathBuf;

use bert_datasets::BertTokenizer;
use bert_datasets::collate::Length;
use bert_train::tasks::Collates;
use bert_train::{AdamWArgs, ItemBatches, Resume, SchedulerType, TrainingArguments};
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::Device;

use crate::range;

/// Per-example defaults for the arguments whose good value depends on the task.
#[derive(Debug, Clone, Copy)]
pub struct TrainDefaults {
    pub learning_rate: f64,
    pub num_train_epochs: f64,
    pub batch_size: usize,
    pub warmup_ratio: f64,
}

impl TrainDefaults {
    /// What the fine-tuning examples start from: lr 1e-4, 3 epochs, batch 32, 10% warmup
    /// (small models such as all-MiniLM-L6-v2 take a larger rate than HF's 5e-5).
    pub const FINE_TUNING: Self = Self {
        learning_rate: 1e-4,
        num_train_epochs: 3.0,
        batch_size: 32,
        warmup_ratio: 0.1,
    };
}

impl Default for TrainDefaults {
    /// HF's: 5e-5, 3 epochs, batch 8, no warmup.
    fn default() -> Self {
        Self {
            learning_rate: 5e-5,
            num_train_epochs: 3.0,
            batch_size: 8,
            warmup_ratio: 0.0,
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct TrainArgs {
    /// Where checkpoints, `log.jsonl`, `training.png`, `best_model/` and `final_model/` go.
    #[arg(long, default_value = "output")]
    pub output_dir: PathBuf,
    /// Peak learning rate (AdamW).
    #[arg(long, value_parser = range::positive)]
    pub learning_rate: Option<f64>,
    /// constant, constant_with_warmup, linear, cosine, cosine_with_restarts, polynomial.
    #[arg(long, default_value = "linear")]
    pub lr_scheduler_type: SchedulerType,
    /// Warmup steps (overrides --warmup-ratio).
    #[arg(long, value_parser = clap::value_parser!(usize))]
    pub warmup_steps: Option<usize>,
    /// Warmup as a fraction of the total steps.
    #[arg(long, value_parser = range::unit_interval)]
    pub warmup_ratio: Option<f64>,
    /// Decoupled weight decay (not applied to biases and LayerNorm weights).
    #[arg(long, default_value_t = 0.0, value_parser = range::non_negative_f32)]
    pub weight_decay: f32,
    /// Global gradient-norm clipping.
    #[arg(long, default_value_t = 1.0, value_parser = range::positive)]
    pub max_grad_norm: f64,
    #[arg(long, default_value_t = 1e-8, value_parser = range::positive_f32)]
    pub adam_epsilon: f32,
    #[arg(long, default_value_t = 0.9, value_parser = range::beta)]
    pub adam_beta1: f32,
    #[arg(long, default_value_t = 0.999, value_parser = range::beta)]
    pub adam_beta2: f32,
    /// Epochs (ignored when --max-steps is given).
    #[arg(long, value_parser = range::positive)]
    pub num_train_epochs: Option<f64>,
    /// Total optimizer steps.
    #[arg(long, value_parser = range::at_least_one)]
    pub max_steps: Option<usize>,
    /// Examples per micro-batch.
    #[arg(long, value_parser = range::at_least_one)]
    pub batch_size: Option<usize>,
    #[arg(long, default_value_t = 1, value_parser = range::at_least_one)]
    pub gradient_accumulation_steps: usize,
    /// Seed of initialisation, dropout, data order and masking.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Keep the training data in file order.
    #[arg(long)]
    pub no_shuffle: bool,
    /// Batch examples of similar length together (HF's `group_by_length` sampling): much less padding.
    #[arg(long)]
    pub group_by_length: bool,
    #[arg(long, default_value_t = 10, value_parser = range::at_least_one)]
    pub logging_steps: usize,
    /// Evaluate every N steps (default: once per epoch and at the end).
    #[arg(long, value_parser = range::at_least_one)]
    pub eval_steps: Option<usize>,
    /// Checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 500, value_parser = range::at_least_one)]
    pub save_steps: usize,
    /// Keep only the newest N checkpoints.
    #[arg(long, value_parser = range::at_least_one)]
    pub save_total_limit: Option<usize>,
    /// Stop after N evaluations without improvement.
    #[arg(long, value_parser = range::at_least_one)]
    pub early_stopping_patience: Option<usize>,
    /// Resume from the newest checkpoint in --output-dir, or from the given checkpoint.
    #[arg(long, num_args = 0..=1, value_name = "CHECKPOINT")]
    pub resume: Option<Option<PathBuf>>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// Mixed precision: bfloat16 matrix products, f32 parameters, optimizer state, norms,
    /// softmax and losses (HF's `--bf16`; `--dtype` is pure precision instead).
    #[arg(long, conflicts_with = "fp16")]
    pub bf16: bool,
    /// Mixed precision with float16 products and dynamic loss scaling (HF's `--fp16`).
    #[arg(long)]
    pub fp16: bool,
    /// Recompute each encoder layer in the backward pass instead of keeping its activations
    /// (HF's `--gradient_checkpointing`; `bert::checkpoint`).
    #[arg(long)]
    pub gradient_checkpointing: bool,
}

impl TrainArgs {
    /// The training device: `device` with autodiff (and gradient checkpointing when asked),
    /// seeded.
    pub fn autodiff(&self, device: &Device) -> Device {
        let mut d = device.clone().autodiff();
        if self.gradient_checkpointing {
            d = d.gradient_checkpointing();
        }
        d.seed(self.seed);
        d
    }

    pub fn batch_size(&self, d: &TrainDefaults) -> usize {
        self.batch_size.unwrap_or(d.batch_size)
    }

    pub fn shuffle(&self) -> bool {
        !self.no_shuffle
    }

    /// The training batches: `items` shuffled each epoch by the seed (unless `--no-shuffle`),
    /// grouped by their [`Length`] under `--group-by-length`, collated by `collate`.
    pub fn item_batches<I: Length + 'static, B: 'static>(
        &self,
        d: &TrainDefaults,
        items: Vec<I>,
        collate: impl Fn(Vec<I>, u64) -> B + 'static,
    ) -> ItemBatches<I, B> {
        let batches = ItemBatches::new(
            items,
            self.batch_size(d),
            self.shuffle(),
            self.seed,
            collate,
        );
        if self.group_by_length {
            let group_size = self.batch_size(d) * self.gradient_accumulation_steps.max(1);
            batches.group_by_length(Length::length, group_size)
        } else {
            batches
        }
    }

    /// [`Self::item_batches`] collated by a Burn `Batcher` on `device`.
    pub fn batches<I: Length + 'static, B: 'static>(
        &self,
        d: &TrainDefaults,
        items: Vec<I>,
        batcher: impl Batcher<I, B> + 'static,
        device: &Device,
    ) -> ItemBatches<I, B> {
        let device = device.clone();
        self.item_batches(d, items, move |items, _| batcher.batch(items, &device))
    }

    /// The trainer's arguments; `steps_per_epoch` sets the default evaluation interval.
    pub fn training_arguments(
        &self,
        d: &TrainDefaults,
        steps_per_epoch: usize,
        has_eval: bool,
    ) -> TrainingArguments {
        TrainingArguments {
            output_dir: self.output_dir.clone(),
            num_train_epochs: self.num_train_epochs.unwrap_or(d.num_train_epochs),
            max_steps: self.max_steps,
            gradient_accumulation_steps: self.gradient_accumulation_steps,
            optim: AdamWArgs {
                learning_rate: self.learning_rate.unwrap_or(d.learning_rate),
                adam_beta1: self.adam_beta1,
                adam_beta2: self.adam_beta2,
                adam_epsilon: self.adam_epsilon,
                weight_decay: self.weight_decay,
            },
            lr_scheduler_type: self.lr_scheduler_type,
            warmup: match self.warmup_steps {
                Some(s) => s as f64,
                None => self.warmup_ratio.unwrap_or(d.warmup_ratio),
            },
            max_grad_norm: self.max_grad_norm,
            bf16: self.bf16,
            fp16: self.fp16,
            seed: self.seed,
            logging_steps: self.logging_steps,
            eval_steps: if has_eval {
                Some(
                    self.eval_steps
                        .unwrap_or((steps_per_epoch / self.gradient_accumulation_steps).max(1)),
                )
            } else {
                None
            },
            save_steps: Some(self.save_steps),
            save_total_limit: self.save_total_limit,
            early_stopping_patience: self.early_stopping_patience,
            metric_for_best_model: "eval_loss".into(),
            greater_is_better: false,
            resume: match &self.resume {
                None => Resume::No,
                Some(None) => Resume::Latest,
                Some(Some(p)) => Resume::Checkpoint(p.clone()),
            },
            progress: !self.quiet,
        }
    }
}

/// The data and model arguments of the fine-tuning examples (HF's `ModelArguments` and
/// `DataTrainingArguments` names).
#[derive(Debug, Clone, clap::Args)]
pub struct TaskArgs {
    #[command(flatten)]
    pub backend: crate::BackendArgs,
    /// HF model directory to start from; a `BertModel` checkpoint gets a new head, reported as
    /// HF reports it (default: all-MiniLM-L6-v2 from the fixtures).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training file (default: the example's data from the fixtures, or generated).
    #[arg(long)]
    pub train_file: Option<PathBuf>,
    /// Evaluation file.
    #[arg(long)]
    pub validation_file: Option<PathBuf>,
    /// Fraction of a --train-file held out for evaluation when there is no --validation-file
    /// (a fixed split by --seed; HF's `validation_split_percentage`).
    #[arg(long, default_value_t = 0.2, value_parser = range::fraction)]
    pub validation_split: f64,
    /// Use only the first N training examples (HF's `select(range(N))`).
    #[arg(long, value_parser = range::at_least_one)]
    pub max_train_samples: Option<usize>,
    /// Use only the first N evaluation examples.
    #[arg(long, value_parser = range::at_least_one)]
    pub max_eval_samples: Option<usize>,
    /// Print the results as JSON lines on stdout.
    #[arg(long)]
    pub json: bool,
    /// Train without evaluating (no held-out split; an empty one is otherwise an error).
    #[arg(long)]
    pub no_eval: bool,
}

/// `--max-length` within the model's `max_position_embeddings`.
pub fn check_max_length(model_dir: &std::path::Path, n: usize) -> Result<(), crate::Error> {
    let limit = bert::BertConfig::from_file(model_dir)?.max_position_embeddings;
    if n > limit {
        return Err(format!(
            "--max-length {n} is beyond the model's max_position_embeddings {limit} ({})",
            model_dir.display()
        )
        .into());
    }
    Ok(())
}

/// What a fine-tuning example starts from.
pub struct Setup {
    /// Evaluation and prediction.
    pub device: Device,
    /// Training: the autodiff device, seeded.
    pub train_device: Device,
    pub model_dir: PathBuf,
    /// Truncating to the example's `--max-length` where it has one.
    pub tokenizer: BertTokenizer,
    /// `--json`: results as JSON lines, no summaries on stderr.
    pub json: bool,
    /// The `--backend` asked for.
    pub backend: String,
}

impl Setup {
    /// The run's one-line summary on stderr (not with `--json`), with the model and backend.
    pub fn summary(&self, what: impl std::fmt::Display) {
        if !self.json {
            eprintln!(
                "{what}, model {} on {}",
                self.model_dir.display(),
                self.backend
            );
        }
    }
}

impl TaskArgs {
    /// The devices, the model directory and its tokenizer.
    pub fn setup(
        &self,
        train: &TrainArgs,
        max_length: Option<usize>,
    ) -> Result<Setup, crate::Error> {
        let device = self.backend.device()?;
        let train_device = train.autodiff(&device);
        let model_dir = crate::model_or_default(&self.model)?;
        let mut tokenizer = BertTokenizer::from_pretrained(&model_dir)?;
        if let Some(n) = max_length {
            check_max_length(&model_dir, n)?;
            tokenizer = tokenizer.with_max_length(n)?;
        }
        Ok(Setup {
            device,
            train_device,
            model_dir,
            tokenizer,
            json: self.json,
            backend: self.backend.backend.to_string(),
        })
    }

    /// The predict-only mode: a saved --model and no --train-file.
    pub fn predict_only(&self, asked: bool) -> bool {
        asked && self.train_file.is_none() && self.model.is_some()
    }

    /// Keeps the first --max-train-samples and --max-eval-samples; with --no-eval, no
    /// evaluation items at all. An empty evaluation set is an error otherwise (a held-out
    /// split too small to hold an item), not a run that silently never evaluates.
    pub fn truncate<T, E>(
        &self,
        train: &mut Vec<T>,
        eval: &mut Vec<E>,
    ) -> Result<(), crate::Error> {
        crate::truncate(train, self.max_train_samples);
        crate::truncate(eval, self.max_eval_samples);
        if self.no_eval {
            eval.clear();
        } else if eval.is_empty() {
            return Err(format!(
                "the evaluation set is empty ({} training items): give a --validation-file, a larger held-out split, or --no-eval",
                train.len()
            )
            .into());
        }
        Ok(())
    }
}

impl TrainArgs {
    /// Trains `model` on `items` collated by the task's collator (see [`Self::batches`]),
    /// evaluating when the task has evaluation data, and prints the run's report.
    pub fn fit<M, I, B, T>(
        &self,
        d: &TrainDefaults,
        model: M,
        items: Vec<I>,
        task: &T,
        setup: &Setup,
    ) -> Result<bert_train::TrainOutput<M>, crate::Error>
    where
        M: burn::module::Module + bert::BertPretrained + bert_train::HeadLoss<B> + 'static,
        I: Length + Clone + 'static,
        B: 'static,
        T: bert_train::TrainTask<M, B> + Collates<I, B>,
    {
        let device = &setup.train_device;
        let batches = self.batches(d, items, task.collator()?, device);
        self.train(
            d,
            model,
            &batches,
            task,
            task.has_eval(),
            device,
            setup.json,
        )
    }

    /// Trains `model` on `batches` with `task` on the autodiff `device` and prints the run's
    /// report.
    #[allow(clippy::too_many_arguments)]
    pub fn train<M, B>(
        &self,
        d: &TrainDefaults,
        model: M,
        batches: &dyn bert_train::BatchSource<B>,
        task: &dyn bert_train::TrainTask<M, B>,
        has_eval: bool,
        device: &Device,
        json: bool,
    ) -> Result<bert_train::TrainOutput<M>, crate::Error>
    where
        M: burn::module::Module + bert::BertPretrained + bert_train::HeadLoss<B> + 'static,
    {
        let training = self.training_arguments(d, batches.len(), has_eval);
        let out = bert_train::train(&training, model, batches, task, device)?;
        crate::report(&out, &training.output_dir, json);
        Ok(out)
    }
}
