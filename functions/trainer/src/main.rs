//! Command-line trainer: reads shop transactions, trains a model version and
//! publishes it to S3 and DynamoDB.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use shoprec::artifacts::ArtifactStore;
use shoprec::config::{dynamodb_client, load_sdk_config, s3_client, Config};
use shoprec::ingest::read_interactions;
use shoprec::publish::publish;
use shoprec::store::DynamoStore;
use shoprec::template::{create_bucket, create_tables};
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
    },
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
        Command::Train { data, dry_run, neighbours, holdout_days, recent_days } => {
            let mut options = TrainOptions::default();
            options.neighbours.per_item = neighbours;
            options.holdout_days = holdout_days;
            options.recent_days = recent_days;
            run_training(data, dry_run, options).await
        }
    }
}

async fn setup(template: PathBuf) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let sdk_config = load_sdk_config().await;
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
        let sdk_config = load_sdk_config().await;
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
        "  NDCG@10 held out    ranker {:.4}, neighbours {:.4}, popularity {:.4}",
        validation["ranker"]["ndcg"].as_f64().unwrap_or_default(),
        validation["neighbours"]["ndcg"].as_f64().unwrap_or_default(),
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
