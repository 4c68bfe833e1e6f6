//! Command-line trainer: reads shop transactions, trains a model version and
//! publishes it to S3 and DynamoDB.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shoprec::artifacts::ArtifactStore;
use shoprec::artifacts::BundleParts;
use shoprec::batch::{default_batch_key, write_batch_recommendations};
use shoprec::config::{dynamodb_client, load_job_sdk_config, s3_client, Config};
use shoprec::ingest::read_interactions;
use shoprec::publish::publish;
use shoprec::recommend::CandidateLimits;
use shoprec::store::DynamoStore;
use shoprec::stream::apply_pending_events;
use shoprec::template::{create_bucket, create_tables};
use shoprec::train::als::AlsOptions;
use shoprec::train::evaluate::{export_split, run_evaluation, EvaluationOptions};
use shoprec::train::split::SplitKind;
use shoprec::train::{train, Progress, TrainOptions};

#[derive(Parser)]
#[command(version, about = "Train and publish shoprec model versions")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create the tables and the artifact bucket that do not exist yet, as template.yaml defines them.
    Setup {
        /// SAM template that defines the tables.
        #[arg(long, default_value = "template.yaml")]
        template: PathBuf,
    },
    /// Clean the data, train a model version and publish it (unless --dry-run).
    Train {
        /// Online Retail CSV or interactions CSV (user_id,item_id,timestamp[,weight]), plain or gzip.
        #[arg(long, env = "SHOPREC_DATA")]
        data: PathBuf,
        /// Train and report without writing to S3 or DynamoDB.
        #[arg(long)]
        dry_run: bool,
        /// Neighbours kept per item.
        #[arg(long, default_value_t = 50)]
        neighbours: usize,
        /// Days at the end of the data that the ranker learns to predict.
        #[arg(long, default_value_t = 28)]
        holdout_days: u32,
        /// Days at the end of the data that count as recent for popularity.
        #[arg(long, default_value_t = 30)]
        recent_days: u32,
        #[command(flatten)]
        als: AlsArgs,
    },
    /// Train on the first part of a split and measure every method on the rest.
    Evaluate {
        #[command(flatten)]
        split: SplitArgs,
        /// Lists of another library as NAME=FILE.jsonl, one {"user_id", "item_ids"} object per line; repeatable.
        /// A FILE.json beside it with "fit_seconds" adds its training time.
        #[arg(long = "peer", value_name = "NAME=FILE.jsonl", value_parser = parse_peer)]
        peers: Vec<(String, PathBuf)>,
        /// Cut-offs of the metrics table, each 1 to 100.
        #[arg(long, value_delimiter = ',', default_value = "10,20", value_parser = clap::value_parser!(u16).range(1..=100))]
        cutoffs: Vec<u16>,
        /// NDCG is reported for every k from 1 to this (1 to 100), and at least up to the largest cut-off.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        k_max: u16,
        /// Folder for quality-<split>.json and quality-<split>.md.
        #[arg(long)]
        report_dir: Option<PathBuf>,
    },
    /// Write a split as CSV files with the factorisation settings, for another library to train on.
    ExportSplit {
        #[command(flatten)]
        split: SplitArgs,
        /// Folder for train.csv, test_users.csv and params.json.
        #[arg(long)]
        out: PathBuf,
        /// Length of the lists the other library should write, 1 to 100.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100))]
        top_n: u16,
    },
    /// Write the top recommendations of every known user of the active model version to S3 as JSON Lines.
    Batch {
        /// Recommendations per user, 1 to 100.
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=100))]
        top: u16,
        /// S3 key in the artifact bucket, outside models/; default batch/<model version>/recommendations-<time>.jsonl.
        #[arg(long, value_parser = parse_batch_key)]
        key: Option<String>,
    },
    /// Fold every event that the live-profile function has not applied yet
    /// into live profiles, such as events whose stream records went to the failure queue.
    ApplyPending,
}

/// Data and split settings shared by evaluate and export-split.
#[derive(clap::Args)]
struct SplitArgs {
    /// Online Retail CSV or interactions CSV (user_id,item_id,timestamp[,weight]), plain or gzip.
    #[arg(long, env = "SHOPREC_DATA")]
    data: PathBuf,
    /// time: train before a cut date and test on the following days; random: hold out a share of each user's items.
    #[arg(long, value_enum, default_value_t = SplitChoice::Time)]
    split: SplitChoice,
    /// Days after the cut that the time split tests on (1 to 3650). The data must span more than
    /// this plus the ranker's own 28-day window.
    #[arg(long, default_value_t = 28, value_parser = clap::value_parser!(u32).range(1..=3650))]
    test_days: u32,
    /// Share of each user's distinct items that the random split holds out.
    #[arg(long, default_value_t = 0.2)]
    test_share: f64,
    /// Seed of the random split.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[command(flatten)]
    als: AlsArgs,
}

/// Settings of the matrix factorisation.
#[derive(clap::Args)]
struct AlsArgs {
    /// Length of the user and item vectors.
    #[arg(long, default_value_t = AlsOptions::default().settings.factors as u16, value_parser = clap::value_parser!(u16).range(1..=1024))]
    factors: u16,
    /// Confidence gained per order: c = 1 + alpha * orders.
    #[arg(long, default_value_t = AlsOptions::default().settings.alpha)]
    alpha: f32,
    /// L2 penalty on every user and item vector.
    #[arg(long, default_value_t = AlsOptions::default().settings.regularization)]
    regularization: f32,
    /// Alternations of a user step and an item step.
    #[arg(long, default_value_t = AlsOptions::default().iterations as u16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    iterations: u16,
}

impl AlsArgs {
    fn apply(&self, options: &mut TrainOptions) -> anyhow::Result<()> {
        anyhow::ensure!(self.alpha.is_finite() && self.alpha >= 0.0, "--alpha {} is invalid: give a number of 0 or more", self.alpha);
        anyhow::ensure!(
            self.regularization.is_finite() && self.regularization > 0.0,
            "--regularization {} is invalid: give a number above 0",
            self.regularization
        );
        options.als.settings.factors = usize::from(self.factors);
        options.als.settings.alpha = self.alpha;
        options.als.settings.regularization = self.regularization;
        options.als.iterations = usize::from(self.iterations);
        Ok(())
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SplitChoice {
    Time,
    Random,
}

impl SplitArgs {
    fn kind(&self) -> anyhow::Result<SplitKind> {
        Ok(match self.split {
            SplitChoice::Time => SplitKind::Time { test_days: self.test_days },
            SplitChoice::Random => {
                anyhow::ensure!(
                    self.test_share > 0.0 && self.test_share < 1.0,
                    "--test-share {} is out of range: give a share between 0 and 1, such as 0.2",
                    self.test_share
                );
                SplitKind::Random { test_share: self.test_share, seed: self.seed }
            }
        })
    }

    /// Training options whose ranker split is of the same kind as the evaluation split.
    fn train_options(&self) -> anyhow::Result<TrainOptions> {
        let mut options = TrainOptions::default();
        self.als.apply(&mut options)?;
        if let SplitKind::Random { test_share, seed } = self.kind()? {
            options.ranker_split = SplitKind::Random { test_share, seed: seed.wrapping_add(1) };
        }
        Ok(options)
    }
}

fn parse_batch_key(value: &str) -> Result<String, String> {
    if value.is_empty() || value.len() > 1024 {
        return Err(format!("invalid key of {} bytes: an S3 key has 1 to 1024 bytes", value.len()));
    }
    if value.chars().any(char::is_control) {
        return Err(format!("invalid key {value:?}: it contains a control character"));
    }
    if value.starts_with('/') || value.split('/').any(|part| part == "." || part == "..") {
        return Err(format!("invalid key {value:?}: write a relative key without . or .. parts, such as batch/daily.jsonl"));
    }
    if value.starts_with(&format!("{}/", shoprec::model::ARTIFACT_PREFIX)) {
        return Err(format!("invalid key {value:?}: models/ holds the model artifacts; write the batch output elsewhere"));
    }
    Ok(value.to_string())
}

fn parse_peer(value: &str) -> Result<(String, PathBuf), String> {
    let (name, path) = value.split_once('=').ok_or_else(|| format!("invalid peer {value:?}: write it as NAME=FILE.jsonl"))?;
    if name.trim().is_empty() || path.trim().is_empty() {
        return Err(format!("invalid peer {value:?}: both NAME and FILE must be given"));
    }
    Ok((name.trim().to_string(), PathBuf::from(path)))
}

/// Prints each step with a spinner and its time.
struct TerminalProgress {
    spinner: Option<ProgressBar>,
}

impl Progress for TerminalProgress {
    fn started(&mut self, step: &str) {
        let spinner = ProgressBar::new_spinner();
        spinner.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("static template"));
        spinner.set_message(step.to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.spinner = Some(spinner);
    }

    fn finished(&mut self, step: &str, elapsed: Duration, summary: &str) {
        if let Some(spinner) = self.spinner.take() {
            spinner.finish_and_clear();
        }
        eprintln!("  {step:<22} {:>7.2} s  {summary}", elapsed.as_secs_f64());
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shoprec::telemetry::init_text_logs();
    match Cli::parse().command {
        Command::Setup { template } => setup(template).await,
        Command::Train { data, dry_run, neighbours, holdout_days, recent_days, als } => {
            let mut options = TrainOptions::default();
            als.apply(&mut options)?;
            options.neighbours.per_item = neighbours;
            options.ranker_split = SplitKind::Time { test_days: holdout_days };
            options.recent_days = recent_days;
            run_training(data, dry_run, options).await
        }
        Command::Evaluate { split, peers, cutoffs, k_max, report_dir } => {
            let cutoffs = cutoffs.into_iter().map(usize::from).collect();
            evaluate(split, peers, cutoffs, usize::from(k_max), report_dir)
        }
        Command::ExportSplit { split, out, top_n } => export(split, out, usize::from(top_n)),
        Command::Batch { top, key } => batch(usize::from(top), key).await,
        Command::ApplyPending => apply_pending().await,
    }
}

fn read_data(data: &std::path::Path) -> anyhow::Result<(Vec<shoprec::ingest::Interaction>, shoprec::ingest::CleaningReport)> {
    let started = Instant::now();
    let (interactions, cleaning) = read_interactions(data).with_context(|| format!("reading {}", data.display()))?;
    eprintln!("  {:<22} {:>7.2} s  {cleaning}", "read and clean", started.elapsed().as_secs_f64());
    Ok((interactions, cleaning))
}

fn evaluate(
    split: SplitArgs,
    peers: Vec<(String, PathBuf)>,
    cutoffs: Vec<usize>,
    k_max: usize,
    report_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut cutoffs = cutoffs;
    cutoffs.sort_unstable();
    cutoffs.dedup();
    let kind = split.kind()?;
    let train = split.train_options()?;
    if let Some(directory) = &report_dir {
        std::fs::create_dir_all(directory).with_context(|| format!("creating the report folder {}", directory.display()))?;
    }
    let (interactions, cleaning) = read_data(&split.data)?;
    let options = EvaluationOptions { split: kind, cutoffs, k_max, train, peers };
    let mut progress = TerminalProgress { spinner: None };
    let report = run_evaluation(&interactions, &cleaning, &options, &mut progress)?;

    println!();
    print!("{}", report.to_markdown());
    if let Some(directory) = report_dir {
        let json_path = directory.join(format!("quality-{}.json", report.split));
        let markdown_path = directory.join(format!("quality-{}.md", report.split));
        std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?).with_context(|| format!("writing {}", json_path.display()))?;
        std::fs::write(&markdown_path, report.to_markdown()).with_context(|| format!("writing {}", markdown_path.display()))?;
        println!("report written to {} and {}", json_path.display(), markdown_path.display());
    }
    Ok(())
}

fn export(split: SplitArgs, out: PathBuf, top_n: usize) -> anyhow::Result<()> {
    let kind = split.kind()?;
    let options = split.train_options()?;
    let (interactions, _) = read_data(&split.data)?;
    let exported = export_split(&interactions, kind, &options, top_n, &out)?;
    println!(
        "{}: {} training rows, {} test users, written to {}",
        exported.description,
        exported.train.len(),
        exported.users.len(),
        out.display()
    );
    Ok(())
}

async fn batch(top: usize, key: Option<String>) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let sdk_config = load_job_sdk_config().await;
    let store = DynamoStore::new(dynamodb_client(&sdk_config), config.tables);
    let artifacts = ArtifactStore::new(s3_client(&sdk_config), config.artifact_bucket);
    let active = store.active_model().await?.context("no active model version: run `trainer train` first")?;
    let bundle = artifacts.load_bundle(&active, BundleParts { neighbours: true, ranker: true, embeddings: true }).await?;
    let key = key.unwrap_or_else(|| default_batch_key(bundle.model_version(), chrono::Utc::now()));

    let bar = ProgressBar::new(0);
    bar.set_style(ProgressStyle::with_template("{bar:40} {pos}/{len} users {elapsed}").expect("static template"));
    let update = |done: usize, total: usize| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    };
    let report = write_batch_recommendations(&store, &artifacts, &bundle, CandidateLimits::default(), top, &key, &update).await?;
    bar.finish_and_clear();
    println!(
        "{} users of model version {} ({} from the popular fallback), {} bytes written to s3://{}/{}",
        report.users, report.model_version, report.fallbacks, report.bytes, report.bucket, report.key
    );
    Ok(())
}

async fn apply_pending() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let sdk_config = load_job_sdk_config().await;
    let store = DynamoStore::new(dynamodb_client(&sdk_config), config.tables);
    let report = apply_pending_events(&store, chrono::Utc::now().timestamp()).await?;
    println!("{} events applied, {} were applied already, {} failed", report.applied, report.already_applied, report.failed);
    if report.failed > 0 {
        anyhow::bail!("{} events could not be applied (see the log lines above): run the command again", report.failed);
    }
    Ok(())
}

async fn setup(template: PathBuf) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let sdk_config = load_job_sdk_config().await;
    let created = create_tables(&dynamodb_client(&sdk_config), &template, &config.tables).await?;
    let bucket_created = create_bucket(&s3_client(&sdk_config), &config.artifact_bucket).await?;
    eprintln!(
        "tables created: {}; bucket {}: {}",
        if created.is_empty() { "none (all exist)".to_string() } else { created.join(", ") },
        config.artifact_bucket,
        if bucket_created { "created" } else { "exists" }
    );
    Ok(())
}

async fn run_training(data: PathBuf, dry_run: bool, options: TrainOptions) -> anyhow::Result<()> {
    let mut progress = TerminalProgress { spinner: None };
    let started = Instant::now();

    progress.started("read and clean");
    let read_started = Instant::now();
    let (interactions, cleaning) = read_interactions(&data).with_context(|| format!("reading {}", data.display()))?;
    let read_time = read_started.elapsed();
    progress.finished("read and clean", read_time, &format!("{} rows read, {} kept", cleaning.rows_read, cleaning.rows_kept));
    for (reason, count) in &cleaning.dropped {
        eprintln!("  {:<24} {count:>9} rows dropped", reason.label());
    }
    if cleaning.descriptions_trimmed > 0 {
        eprintln!("  {:<22} {:>9} descriptions trimmed", "trimmed", cleaning.descriptions_trimmed);
    }

    let trained = train(&interactions, &cleaning, &options, &mut progress)?;
    let validation = &trained.ranker_report["validation_at_10"];

    let published = if dry_run {
        None
    } else {
        let config = Config::from_env()?;
        let sdk_config = load_job_sdk_config().await;
        let store = DynamoStore::new(dynamodb_client(&sdk_config), config.tables);
        let artifacts = ArtifactStore::new(s3_client(&sdk_config), config.artifact_bucket);
        Some(publish(&trained, &options, &store, &artifacts, &mut progress).await?)
    };

    println!();
    println!("Summary");
    println!("  input               {}", data.display());
    println!("  rows read           {}", cleaning.rows_read);
    println!("  rows kept           {}", cleaning.rows_kept);
    println!("  rows dropped        {}", cleaning.dropped_total());
    for (reason, count) in &cleaning.dropped {
        println!("    {:<24}{count}", reason.label());
    }
    println!("  users               {}", trained.data.users);
    println!("  items               {}", trained.data.items);
    println!(
        "  NDCG@10 held out    ranker {:.4}, neighbours {:.4}, embeddings {:.4}, popularity {:.4}",
        validation["ranker"]["ndcg"].as_f64().unwrap_or_default(),
        validation["neighbours"]["ndcg"].as_f64().unwrap_or_default(),
        validation["embeddings"]["ndcg"].as_f64().unwrap_or_default(),
        validation["popularity"]["ndcg"].as_f64().unwrap_or_default()
    );
    println!("  time per step");
    println!("    {:<22}{:>8.2} s", "read and clean", read_time.as_secs_f64());
    let publish_times = published.iter().flat_map(|report| report.step_times.iter());
    for (step, elapsed) in trained.step_times.iter().chain(publish_times) {
        println!("    {step:<22}{:>8.2} s", elapsed.as_secs_f64());
    }
    println!("    {:<22}{:>8.2} s", "total", started.elapsed().as_secs_f64());
    match published {
        Some(report) => {
            println!("  model version       {} (active)", report.model_version);
            println!("  manifest            {}", report.manifest_key);
        }
        None => println!("  model version       not published (--dry-run)"),
    }
    Ok(())
}
