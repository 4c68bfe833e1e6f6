//! Reading and cleaning of purchase data into [`Interaction`] rows.
//!
//! Two CSV formats are accepted, and the header line decides which one a file uses:
//!
//! - **Online Retail**, the UCI "Online Retail" data set converted to CSV, with the header
//!   `InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country`.
//! - **Interactions**, a generic format with the header `user_id,item_id,timestamp` and an
//!   optional fourth column `weight`.
//!
//! Input may be plain or gzip-compressed. The gzip magic bytes decide, not the file name.
//! The header may start with a UTF-8 byte order mark, and its field names may carry
//! surrounding spaces.
//!
//! Each data row is either kept or dropped, and a dropped row is counted in the
//! [`CleaningReport`] under the first [`DropReason`] that applies, in the order of the enum.
//! A row whose field count differs from the header's, or that is not valid UTF-8, is
//! [`DropReason::Malformed`]. Apart from an unknown header, only I/O and decompression
//! failures end the read with an error.
//!
//! # Online Retail rules
//!
//! 1. `Malformed`: Quantity, UnitPrice or InvoiceDate cannot be parsed, or StockCode is empty.
//! 2. `Cancelled`: InvoiceNo starts with `C` or `c`.
//! 3. `NonPositiveQuantity`: Quantity <= 0 (stock adjustments that are not cancellations).
//! 4. `MissingCustomer`: CustomerID is empty (guest checkouts). An id written as a float,
//!    such as `17850.0`, is normalised to `17850`. Such a row with a positive price and a
//!    product code still lists its item in [`CleaningReport::guest_listings`], so that items
//!    only guests bought join the catalogue.
//! 5. `NonPositivePrice`: UnitPrice <= 0 (free items, bad-debt adjustments).
//! 6. `NonProductCode`: StockCode fails [`is_product_code`] (postage, fees, manual
//!    adjustments, samples, gift vouchers).
//! 7. `Duplicate`: all eight fields equal those of an earlier kept row. Fields are compared
//!    after trimming and normalisation, so the CustomerID, the letter case of StockCode and
//!    the numeric values are compared as parsed.
//!
//! The item id is the StockCode in upper case. In the UCI data 111 codes also occur in lower
//! case (`85123a` beside `85123A`, 1,942 rows), and 107 of them carry the same description as
//! their upper-case twin, so both spellings name one product.
//!
//! InvoiceDate (`YYYY-MM-DD HH:MM:SS`) is UK local time without a zone in the source. It is
//! read as UTC, so timestamps between the last Sunday of March and the last Sunday of
//! October are one hour later than the true instant.
//!
//! # Interactions rules
//!
//! 1. `Malformed`: empty user_id or item_id, or a timestamp or weight that cannot be parsed.
//!    The timestamp is RFC 3339 (`2011-12-09T12:50:00Z`), `YYYY-MM-DD HH:MM:SS` read as UTC,
//!    or integer unix seconds. An empty weight cell means 1.0.
//! 2. `NonPositiveQuantity`: weight <= 0.
//! 3. `Duplicate`: same user_id, item_id, timestamp and weight as an earlier kept row.
//!
//! Ids in this format are kept as written apart from trimming.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::hash::{Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, NaiveTime};
use csv::ByteRecord;
use rustc_hash::{FxHashMap, FxHasher};
use serde::{Deserialize, Serialize};

/// Header of the Online Retail CSV, in column order.
pub const ONLINE_RETAIL_HEADER: [&str; 8] =
    ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID", "Country"];

/// Required columns of the generic interactions CSV. A fourth column, [`WEIGHT_COLUMN`], is optional.
pub const INTERACTIONS_HEADER: [&str; 3] = ["user_id", "item_id", "timestamp"];

/// Name of the optional fourth column of the generic interactions CSV.
pub const WEIGHT_COLUMN: &str = "weight";

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

// Column positions in the Online Retail CSV.
const INVOICE_NO: usize = 0;
const STOCK_CODE: usize = 1;
const DESCRIPTION: usize = 2;
const QUANTITY: usize = 3;
const INVOICE_DATE: usize = 4;
const UNIT_PRICE: usize = 5;
const CUSTOMER_ID: usize = 6;
const COUNTRY: usize = 7;

/// One cleaned user–item event: a purchase line or a row of the generic format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    /// Customer id, with a float spelling such as `17850.0` normalised to `17850`.
    pub user_id: String,
    /// Item id: the upper-case StockCode, or the generic format's item_id as written.
    pub item_id: String,
    /// Event time in unix seconds (UTC).
    pub timestamp: i64,
    /// Units bought, or the generic format's weight (1.0 when absent). Always > 0.
    pub quantity: f64,
    /// Price of one unit in the source currency (pounds sterling in the UCI data). `None` in the generic format.
    pub unit_price: Option<f64>,
    /// Product description without surrounding whitespace. `None` when empty or in the generic format.
    pub title: Option<String>,
    /// Invoice number, which groups the lines of one order. `None` when empty or in the generic format.
    pub basket_id: Option<String>,
}

/// Reason for dropping an input row, in the order in which the rules are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// A required value is missing or cannot be parsed, or the field count is wrong.
    Malformed,
    /// The invoice number starts with `C`, which marks a cancellation.
    Cancelled,
    /// Quantity or weight is zero or negative.
    NonPositiveQuantity,
    /// CustomerID is empty.
    MissingCustomer,
    /// UnitPrice is zero or negative.
    NonPositivePrice,
    /// StockCode is not a product, such as postage or a fee (see [`is_product_code`]).
    NonProductCode,
    /// The row repeats an earlier kept row.
    Duplicate,
}

impl DropReason {
    /// All reasons, in the order in which the rules are checked.
    pub const ALL: [DropReason; 7] = [
        DropReason::Malformed,
        DropReason::Cancelled,
        DropReason::NonPositiveQuantity,
        DropReason::MissingCustomer,
        DropReason::NonPositivePrice,
        DropReason::NonProductCode,
        DropReason::Duplicate,
    ];

    /// Returns the snake_case name used in logs and metrics, such as `non_positive_price`.
    pub fn label(&self) -> &'static str {
        match self {
            DropReason::Malformed => "malformed",
            DropReason::Cancelled => "cancelled",
            DropReason::NonPositiveQuantity => "non_positive_quantity",
            DropReason::MissingCustomer => "missing_customer",
            DropReason::NonPositivePrice => "non_positive_price",
            DropReason::NonProductCode => "non_product_code",
            DropReason::Duplicate => "duplicate",
        }
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// CSV layout of an input file, detected from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputFormat {
    /// The UCI Online Retail columns ([`ONLINE_RETAIL_HEADER`]).
    OnlineRetail,
    /// `user_id,item_id,timestamp` with an optional `weight` column.
    Interactions,
}

impl InputFormat {
    /// Returns the snake_case name of the format, such as `online_retail`.
    pub fn label(&self) -> &'static str {
        match self {
            InputFormat::OnlineRetail => "online_retail",
            InputFormat::Interactions => "interactions",
        }
    }
}

/// An item seen in rows that were dropped for a missing customer only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemListing {
    /// Upper-case StockCode.
    pub item_id: String,
    /// Most frequent non-empty description, or the item id when there is none.
    pub title: String,
    /// Median unit price of those rows.
    pub price: f64,
}

/// Counts of rows read, kept and dropped by one read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CleaningReport {
    /// Format detected from the header.
    pub format: InputFormat,
    /// Data rows read, without the header.
    pub rows_read: u64,
    /// Rows returned as interactions.
    pub rows_kept: u64,
    /// Dropped rows per reason. Reasons that dropped no row are absent.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Kept rows whose description had surrounding whitespace removed.
    pub descriptions_trimmed: u64,
    /// Items of guest checkouts (Online Retail rows dropped only for a missing
    /// customer), sorted by item id. Includes items that customers bought too.
    pub guest_listings: Vec<ItemListing>,
}

impl CleaningReport {
    fn new(format: InputFormat) -> Self {
        CleaningReport { format, rows_read: 0, rows_kept: 0, dropped: BTreeMap::new(), descriptions_trimmed: 0, guest_listings: Vec::new() }
    }

    /// Returns the number of dropped rows over all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    fn count_drop(&mut self, reason: DropReason) {
        *self.dropped.entry(reason).or_insert(0) += 1;
    }
}

impl fmt::Display for CleaningReport {
    /// Formats the report on one line, such as
    /// `online_retail: 10 rows read, 7 kept, 3 dropped (cancelled 2, duplicate 1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} rows read, {} kept, {} dropped", self.format.label(), self.rows_read, self.rows_kept, self.dropped_total())?;
        if !self.dropped.is_empty() {
            let parts: Vec<String> = self.dropped.iter().map(|(reason, count)| format!("{} {}", reason.label(), count)).collect();
            write!(f, " ({})", parts.join(", "))?;
        }
        Ok(())
    }
}

/// Failure to read an input file. Invalid rows are not errors: they are counted in the [`CleaningReport`].
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file could not be opened or its first bytes could not be read.
    #[error("failed to read {}: {source} (check that the path exists and is readable)", path.display())]
    Io {
        /// Path passed to [`read_interactions`].
        path: PathBuf,
        /// Error returned by the operating system.
        #[source]
        source: io::Error,
    },

    /// The header line matches neither accepted format.
    #[error(
        "unknown CSV header \"{found}\", expected \"{}\" (Online Retail) or \"{}\" with an optional \",{}\" column (interactions)",
        ONLINE_RETAIL_HEADER.join(","),
        INTERACTIONS_HEADER.join(","),
        WEIGHT_COLUMN
    )]
    UnknownHeader {
        /// Header line as read, with fields joined by commas, or `(empty file)`.
        found: String,
    },

    /// Reading or decompressing the data failed part-way, for example on a truncated gzip file.
    #[error("failed to read CSV record at line {line}: {source} (check that the file is complete, or fetch it again)")]
    Csv {
        /// 1-based line number of the decompressed CSV at which reading failed.
        line: u64,
        /// Error from the CSV reader, which wraps I/O and gzip errors.
        #[source]
        source: csv::Error,
    },
}

/// Reads and cleans the CSV file at `path`, plain or gzip-compressed.
///
/// The format comes from the header (see the module documentation), and gzip from the first two
/// bytes of the file, so the file name does not matter.
pub fn read_interactions(path: &Path) -> Result<(Vec<Interaction>, CleaningReport), IngestError> {
    let file = File::open(path).map_err(|source| IngestError::Io { path: path.to_path_buf(), source })?;

    // Detect gzip here rather than in read_interactions_from, so that a read failure names the path.
    let (is_gzip, file) = sniff_gzip(file).map_err(|source| IngestError::Io { path: path.to_path_buf(), source })?;
    let result = read_maybe_gzip(is_gzip, file);

    if let Ok((_, report)) = &result {
        tracing::info!(path = %path.display(), %report, "read interactions");
    }
    result
}

/// Reads and cleans CSV data from `reader`, plain or gzip-compressed.
///
/// Works as [`read_interactions`]. An I/O error while reading the first bytes is returned as
/// [`IngestError::Csv`] at line 1, because there is no path to report.
pub fn read_interactions_from<R: Read>(reader: R) -> Result<(Vec<Interaction>, CleaningReport), IngestError> {
    let (is_gzip, reader) = sniff_gzip(reader).map_err(|error| IngestError::Csv { line: 1, source: csv::Error::from(error) })?;
    read_maybe_gzip(is_gzip, reader)
}

/// Returns whether `stock_code` names a product: five ASCII digits followed by zero or more
/// ASCII letters of either case, such as `22423`, `85123A` or `15056BL`.
///
/// In the UCI Online Retail data every other code is a service or accounting line. These are
/// `POST`, `DOT` and `C2` (postage and carriage), `M` and `m` (manual), `D` (discount),
/// `S` (samples) and `B` (bad debt). Fees are `BANK CHARGES`, `AMAZONFEE` and `CRUK` (charity
/// commission). `PADS` is a placeholder priced 0.001, and `gift_0001_*` are gift vouchers.
/// The `DCGS*` codes of the dotcom shop are products that fail this rule too, but in that data
/// every row with one of them lacks a customer id. Surrounding spaces make the code fail, so trim first.
pub fn is_product_code(stock_code: &str) -> bool {
    let bytes = stock_code.as_bytes();
    bytes.len() >= 5 && bytes[..5].iter().all(u8::is_ascii_digit) && bytes[5..].iter().all(u8::is_ascii_alphabetic)
}

/// A stream whose first bytes were read to detect gzip, with those bytes put back in front.
type Replayed<R> = io::Chain<io::Cursor<Vec<u8>>, R>;

/// Reads up to the first two bytes of `reader` and returns whether they are the gzip magic
/// number, with a reader that yields the whole stream again.
fn sniff_gzip<R: Read>(mut reader: R) -> io::Result<(bool, Replayed<R>)> {
    let mut magic = Vec::with_capacity(GZIP_MAGIC.len());
    (&mut reader).take(GZIP_MAGIC.len() as u64).read_to_end(&mut magic)?;
    let is_gzip = magic == GZIP_MAGIC;
    Ok((is_gzip, io::Cursor::new(magic).chain(reader)))
}

fn read_maybe_gzip<R: Read>(is_gzip: bool, stream: R) -> Result<(Vec<Interaction>, CleaningReport), IngestError> {
    if is_gzip {
        // MultiGzDecoder also reads files made of several concatenated gzip members (pigz, bgzip).
        read_csv(flate2::read::MultiGzDecoder::new(stream))
    } else {
        read_csv(stream)
    }
}

/// Layout and column count of the detected format.
#[derive(Clone, Copy)]
struct Layout {
    format: InputFormat,
    columns: usize,
}

fn read_csv<R: Read>(stream: R) -> Result<(Vec<Interaction>, CleaningReport), IngestError> {
    // Flexible, so that a row with a wrong field count is counted as malformed instead of
    // ending the read.
    let mut reader = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(stream);

    let mut record = ByteRecord::new();
    if !read_record(&mut reader, &mut record)? {
        return Err(IngestError::UnknownHeader { found: "(empty file)".to_string() });
    }
    let layout = detect_layout(&record)?;

    let mut cleaner = Cleaner::new(layout.format);
    while read_record(&mut reader, &mut record)? {
        cleaner.report.rows_read += 1;
        let cleaned = if record.len() != layout.columns {
            Err(DropReason::Malformed)
        } else {
            match layout.format {
                InputFormat::OnlineRetail => clean_online_retail(&record),
                InputFormat::Interactions => clean_generic(&record),
            }
        };
        match cleaned {
            Ok(row) => cleaner.keep_unless_duplicate(row),
            Err(reason) => {
                if reason == DropReason::Malformed {
                    log_malformed(&record);
                }
                if reason == DropReason::MissingCustomer {
                    cleaner.list_guest_item(&record);
                }
                cleaner.report.count_drop(reason);
            }
        }
    }

    let Cleaner { rows, mut report, guest_items, .. } = cleaner;
    report.rows_kept = rows.len() as u64;
    report.guest_listings = guest_listings(guest_items);
    if report.rows_read > 0 && report.dropped.get(&DropReason::Malformed) == Some(&report.rows_read) {
        tracing::warn!(
            rows = report.rows_read,
            format = report.format.label(),
            "every row is malformed, so check the timestamp and number formats"
        );
    }
    Ok((rows, report))
}

/// Reads the next record into `record` and returns false at the end of the data.
fn read_record<R: Read>(reader: &mut csv::Reader<R>, record: &mut ByteRecord) -> Result<bool, IngestError> {
    reader.read_byte_record(record).map_err(|source| IngestError::Csv {
        line: source.position().map_or_else(|| reader.position().line(), |position| position.line()),
        source,
    })
}

fn detect_layout(header: &ByteRecord) -> Result<Layout, IngestError> {
    let names: Vec<String> = header
        .iter()
        .enumerate()
        .map(|(index, field)| {
            let field = if index == 0 { field.strip_prefix(UTF8_BOM).unwrap_or(field) } else { field };
            String::from_utf8_lossy(field).trim().to_string()
        })
        .collect();

    if names == ONLINE_RETAIL_HEADER {
        return Ok(Layout { format: InputFormat::OnlineRetail, columns: ONLINE_RETAIL_HEADER.len() });
    }
    let generic = names.len() >= INTERACTIONS_HEADER.len()
        && names[..INTERACTIONS_HEADER.len()] == INTERACTIONS_HEADER
        && (names.len() == INTERACTIONS_HEADER.len() || (names.len() == INTERACTIONS_HEADER.len() + 1 && names[3] == WEIGHT_COLUMN));
    if generic {
        return Ok(Layout { format: InputFormat::Interactions, columns: names.len() });
    }
    Err(IngestError::UnknownHeader { found: names.join(",") })
}

fn log_malformed(record: &ByteRecord) {
    let line = record.position().map_or(0, |position| position.line());
    tracing::debug!(
        line,
        record = ?record.iter().map(String::from_utf8_lossy).collect::<Vec<_>>(),
        "dropped malformed row"
    );
}

/// Kept rows, the report and the index that finds duplicates among the kept rows.
struct Cleaner {
    rows: Vec<Interaction>,
    report: CleaningReport,
    /// Country of each kept row, as an index into `countries`, because the duplicate check
    /// compares the country but `Interaction` does not store it.
    row_country: Vec<u32>,
    countries: FxHashMap<Box<str>, u32>,
    /// Index of the latest kept row for each row hash.
    latest_by_hash: FxHashMap<u64, usize>,
    /// For each kept row, the index of the previous kept row with the same hash, or `usize::MAX`.
    previous_same_hash: Vec<usize>,
    /// Description counts and prices of guest-checkout items, by item id.
    guest_items: FxHashMap<String, (FxHashMap<String, u32>, Vec<f64>)>,
}

/// A cleaned row before the duplicate check, with the one field that `Interaction` lacks.
struct CleanRow {
    interaction: Interaction,
    country: Option<Box<str>>,
    description_trimmed: bool,
}

impl Cleaner {
    fn new(format: InputFormat) -> Self {
        Cleaner {
            rows: Vec::new(),
            report: CleaningReport::new(format),
            row_country: Vec::new(),
            countries: FxHashMap::default(),
            latest_by_hash: FxHashMap::default(),
            previous_same_hash: Vec::new(),
            guest_items: FxHashMap::default(),
        }
    }

    /// Records the item of an Online Retail row that lacks only its customer.
    fn list_guest_item(&mut self, record: &ByteRecord) {
        let (Ok(stock_code), Ok(price)) = (field(record, STOCK_CODE), field(record, UNIT_PRICE)) else { return };
        let Some(price) = parse_finite(price).filter(|&price| price > 0.0) else { return };
        if !is_product_code(stock_code) {
            return;
        }
        let (titles, prices) = self.guest_items.entry(stock_code.to_ascii_uppercase()).or_default();
        if let Ok(description) = field(record, DESCRIPTION) {
            if !description.is_empty() {
                *titles.entry(description.to_string()).or_default() += 1;
            }
        }
        prices.push(price);
    }

    /// Appends the row unless an equal row was kept before, which is counted as a duplicate.
    ///
    /// Rows are found by hash and then compared field by field, so a hash collision never
    /// drops a row.
    fn keep_unless_duplicate(&mut self, row: CleanRow) {
        let country = self.intern_country(row.country);
        let hash = row_hash(&row.interaction, country);

        let mut candidate = self.latest_by_hash.get(&hash).copied().unwrap_or(usize::MAX);
        while candidate != usize::MAX {
            if self.row_country[candidate] == country && same_row(&self.rows[candidate], &row.interaction) {
                self.report.count_drop(DropReason::Duplicate);
                return;
            }
            candidate = self.previous_same_hash[candidate];
        }

        let index = self.rows.len();
        let previous = self.latest_by_hash.insert(hash, index).unwrap_or(usize::MAX);
        self.previous_same_hash.push(previous);
        self.row_country.push(country);
        self.rows.push(row.interaction);
        if row.description_trimmed {
            self.report.descriptions_trimmed += 1;
        }
    }

    fn intern_country(&mut self, country: Option<Box<str>>) -> u32 {
        let Some(country) = country else {
            return u32::MAX;
        };
        if let Some(&id) = self.countries.get(&country) {
            return id;
        }
        let id = self.countries.len() as u32;
        self.countries.insert(country, id);
        id
    }
}

fn row_hash(row: &Interaction, country: u32) -> u64 {
    let mut hasher = FxHasher::default();
    row.user_id.hash(&mut hasher);
    row.item_id.hash(&mut hasher);
    row.timestamp.hash(&mut hasher);
    row.quantity.to_bits().hash(&mut hasher);
    row.unit_price.map(f64::to_bits).hash(&mut hasher);
    row.title.hash(&mut hasher);
    row.basket_id.hash(&mut hasher);
    country.hash(&mut hasher);
    hasher.finish()
}

/// Compares every field, with floats by bit pattern. Cleaned values are finite and positive,
/// so bit equality is numeric equality.
fn same_row(a: &Interaction, b: &Interaction) -> bool {
    a.user_id == b.user_id
        && a.item_id == b.item_id
        && a.timestamp == b.timestamp
        && a.quantity.to_bits() == b.quantity.to_bits()
        && a.unit_price.map(f64::to_bits) == b.unit_price.map(f64::to_bits)
        && a.title == b.title
        && a.basket_id == b.basket_id
}

/// Turns the guest-checkout rows of each item into one listing, sorted by item id.
fn guest_listings(items: FxHashMap<String, (FxHashMap<String, u32>, Vec<f64>)>) -> Vec<ItemListing> {
    let mut listings: Vec<ItemListing> = items
        .into_iter()
        .map(|(item_id, (titles, mut prices))| {
            prices.sort_by(f64::total_cmp);
            let title = titles
                .into_iter()
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
                .map_or_else(|| item_id.clone(), |(title, _)| title);
            ItemListing { price: prices[prices.len() / 2], title, item_id }
        })
        .collect();
    listings.sort_by(|a, b| a.item_id.cmp(&b.item_id));
    listings
}

/// Returns field `index` as trimmed UTF-8, or `Malformed` when it is not UTF-8.
fn field(record: &ByteRecord, index: usize) -> Result<&str, DropReason> {
    let bytes = record.get(index).ok_or(DropReason::Malformed)?;
    std::str::from_utf8(bytes).map(str::trim).map_err(|_| DropReason::Malformed)
}

/// Applies the Online Retail rules (see the module documentation) to one row.
///
/// The caller has checked that the row has eight fields.
fn clean_online_retail(record: &ByteRecord) -> Result<CleanRow, DropReason> {
    let invoice_no = field(record, INVOICE_NO)?;
    let stock_code = field(record, STOCK_CODE)?;
    let raw_description = record.get(DESCRIPTION).ok_or(DropReason::Malformed)?;
    let raw_description = std::str::from_utf8(raw_description).map_err(|_| DropReason::Malformed)?;
    let quantity = parse_finite(field(record, QUANTITY)?).ok_or(DropReason::Malformed)?;
    let timestamp = parse_naive_utc(field(record, INVOICE_DATE)?).ok_or(DropReason::Malformed)?;
    let unit_price = parse_finite(field(record, UNIT_PRICE)?).ok_or(DropReason::Malformed)?;
    let customer_id = normalise_customer_id(field(record, CUSTOMER_ID)?);
    let country = field(record, COUNTRY)?;
    if stock_code.is_empty() {
        return Err(DropReason::Malformed);
    }

    if invoice_no.starts_with(['C', 'c']) {
        return Err(DropReason::Cancelled);
    }
    if quantity <= 0.0 {
        return Err(DropReason::NonPositiveQuantity);
    }
    if customer_id.is_empty() {
        return Err(DropReason::MissingCustomer);
    }
    if unit_price <= 0.0 {
        return Err(DropReason::NonPositivePrice);
    }
    if !is_product_code(stock_code) {
        return Err(DropReason::NonProductCode);
    }

    let description = raw_description.trim();
    Ok(CleanRow {
        interaction: Interaction {
            user_id: customer_id.to_string(),
            item_id: stock_code.to_ascii_uppercase(),
            timestamp,
            quantity,
            unit_price: Some(unit_price),
            title: non_empty(description),
            basket_id: non_empty(invoice_no),
        },
        country: Some(country.into()),
        description_trimmed: description.len() != raw_description.len(),
    })
}

/// Applies the generic interactions rules (see the module documentation) to one row.
///
/// The caller has checked that the row has as many fields as the header.
fn clean_generic(record: &ByteRecord) -> Result<CleanRow, DropReason> {
    let user_id = field(record, 0)?;
    let item_id = field(record, 1)?;
    let timestamp = parse_timestamp(field(record, 2)?).ok_or(DropReason::Malformed)?;
    let weight = match record.get(3) {
        None => 1.0,
        Some(_) => {
            let text = field(record, 3)?;
            if text.is_empty() {
                1.0
            } else {
                parse_finite(text).ok_or(DropReason::Malformed)?
            }
        }
    };
    if user_id.is_empty() || item_id.is_empty() {
        return Err(DropReason::Malformed);
    }

    if weight <= 0.0 {
        return Err(DropReason::NonPositiveQuantity);
    }

    Ok(CleanRow {
        interaction: Interaction {
            user_id: user_id.to_string(),
            item_id: item_id.to_string(),
            timestamp,
            quantity: weight,
            unit_price: None,
            title: None,
            basket_id: None,
        },
        country: None,
        description_trimmed: false,
    })
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_string())
}

/// Parses a decimal number and rejects `NaN` and infinities, which `f64::from_str` accepts.
fn parse_finite(text: &str) -> Option<f64> {
    text.parse::<f64>().ok().filter(|value| value.is_finite())
}

/// Strips a zero fraction from an integer id written as a float (`17850.0` becomes `17850`).
/// Other ids are returned unchanged.
fn normalise_customer_id(id: &str) -> &str {
    match id.split_once('.') {
        Some((integer, fraction))
            if !integer.is_empty() && integer.bytes().all(|b| b.is_ascii_digit()) && fraction.bytes().all(|b| b == b'0') =>
        {
            integer
        }
        _ => id,
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS` as UTC and returns unix seconds, or `None` when the text has
/// another shape or names an invalid date or time.
fn parse_naive_utc(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    if bytes.len() != 19 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[10] != b' ' || bytes[13] != b':' || bytes[16] != b':' {
        return None;
    }
    let number = |start: usize, end: usize| -> Option<u32> {
        bytes[start..end].iter().try_fold(0u32, |value, &b| b.is_ascii_digit().then(|| value * 10 + u32::from(b - b'0')))
    };

    let date = NaiveDate::from_ymd_opt(number(0, 4)? as i32, number(5, 7)?, number(8, 10)?)?;
    let time = NaiveTime::from_hms_opt(number(11, 13)?, number(14, 16)?, number(17, 19)?)?;
    Some(date.and_time(time).and_utc().timestamp())
}

/// Parses a generic-format timestamp: `YYYY-MM-DD HH:MM:SS` as UTC, integer unix seconds
/// (optionally negative), or RFC 3339 with fractional seconds truncated.
fn parse_timestamp(text: &str) -> Option<i64> {
    if let Some(seconds) = parse_naive_utc(text) {
        return Some(seconds);
    }
    let digits = text.strip_prefix('-').unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<i64>().ok();
    }
    DateTime::parse_from_rfc3339(text).ok().map(|instant| instant.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const RETAIL_HEADER: &str = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n";
    const GOOD_ROW: &str = "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850,United Kingdom\n";

    /// 2010-12-01 08:26:00 UTC in unix seconds.
    const GOOD_ROW_TIME: i64 = 1_291_191_960;

    fn read(text: &str) -> (Vec<Interaction>, CleaningReport) {
        read_interactions_from(text.as_bytes()).expect("test input should parse")
    }

    fn retail(rows: &str) -> (Vec<Interaction>, CleaningReport) {
        read(&format!("{RETAIL_HEADER}{rows}"))
    }

    /// Returns the single reason for which `row` is dropped, or `None` when it is kept.
    #[test]
    fn guest_rows_list_their_items() {
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n",
            ONLINE_RETAIL_HEADER.join(","),
            "536365,84923a,RED HEART TIN,1,2010-12-01 08:26:00,2.00,,United Kingdom",
            "536366,84923A,RED HEART TIN ,2,2010-12-01 09:26:00,3.00,,United Kingdom",
            "536367,POST,POSTAGE,1,2010-12-01 09:26:00,18.00,,United Kingdom",
            "536368,22000,FREE GIFT,1,2010-12-01 09:26:00,0,,United Kingdom"
        );
        let (rows, report) = read(&text);
        assert!(rows.is_empty());
        assert_eq!(report.guest_listings.len(), 1, "{:?}", report.guest_listings);
        let listing = &report.guest_listings[0];
        assert_eq!(listing.item_id, "84923A");
        assert_eq!(listing.title, "RED HEART TIN");
        assert_eq!(listing.price, 3.0);
    }

    fn retail_drop(row: &str) -> Option<DropReason> {
        let (rows, report) = retail(row);
        assert_eq!(report.rows_read, 1, "row: {row}");
        if rows.len() == 1 {
            return None;
        }
        assert_eq!(report.dropped_total(), 1, "row: {row}");
        report.dropped.keys().next().copied()
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Writes `bytes` to a new file in the temporary directory and returns its path.
    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("shoprec-ingest-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn retail_good_row_fields() {
        let (rows, report) = retail(GOOD_ROW);
        assert_eq!(report.format, InputFormat::OnlineRetail);
        assert_eq!(report.rows_read, 1);
        assert_eq!(report.rows_kept, 1);
        assert_eq!(report.dropped_total(), 0);
        let row = &rows[0];
        assert_eq!(row.user_id, "17850");
        assert_eq!(row.item_id, "85123A");
        assert_eq!(row.timestamp, GOOD_ROW_TIME);
        assert_eq!(row.quantity, 6.0);
        assert_eq!(row.unit_price, Some(2.55));
        assert_eq!(row.title.as_deref(), Some("WHITE HANGING HEART T-LIGHT HOLDER"));
        assert_eq!(row.basket_id.as_deref(), Some("536365"));
    }

    #[test]
    fn retail_malformed_values() {
        let cases = [
            ("quantity", "536365,85123A,X,six,2010-12-01 08:26:00,2.55,17850,UK"),
            ("quantity NaN", "536365,85123A,X,NaN,2010-12-01 08:26:00,2.55,17850,UK"),
            ("price", "536365,85123A,X,6,2010-12-01 08:26:00,,17850,UK"),
            ("price inf", "536365,85123A,X,6,2010-12-01 08:26:00,inf,17850,UK"),
            ("date shape", "536365,85123A,X,6,12/1/2010 8:26,2.55,17850,UK"),
            ("date value", "536365,85123A,X,6,2010-02-30 08:26:00,2.55,17850,UK"),
            ("time value", "536365,85123A,X,6,2010-12-01 24:26:00,2.55,17850,UK"),
            ("stock code", "536365, ,X,6,2010-12-01 08:26:00,2.55,17850,UK"),
            ("too few fields", "536365,85123A,X,6,2010-12-01 08:26:00,2.55,17850"),
            ("too many fields", "536365,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK,extra"),
        ];
        for (case, row) in cases {
            assert_eq!(retail_drop(row), Some(DropReason::Malformed), "case: {case}");
        }
    }

    #[test]
    fn retail_invalid_utf8_malformed() {
        let mut bytes = RETAIL_HEADER.as_bytes().to_vec();
        bytes.extend_from_slice(b"536365,85123A,CAF\xC9,6,2010-12-01 08:26:00,2.55,17850,UK\n");
        let (_, report) = read_interactions_from(bytes.as_slice()).unwrap();
        assert_eq!(report.dropped.get(&DropReason::Malformed), Some(&1));
    }

    #[test]
    fn retail_cancelled() {
        let upper = "C536379,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK";
        let lower = "c536379,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK";
        assert_eq!(retail_drop(upper), Some(DropReason::Cancelled));
        assert_eq!(retail_drop(lower), Some(DropReason::Cancelled));
    }

    #[test]
    fn retail_cancelled_before_quantity() {
        let row = "C536379,85123A,X,-6,2010-12-01 08:26:00,2.55,,UK";
        assert_eq!(retail_drop(row), Some(DropReason::Cancelled));
    }

    #[test]
    fn retail_non_positive_quantity() {
        let zero = "536365,85123A,X,0,2010-12-01 08:26:00,2.55,17850,UK";
        let negative = "536365,85123A,X,-3,2010-12-01 08:26:00,2.55,,UK";
        assert_eq!(retail_drop(zero), Some(DropReason::NonPositiveQuantity));
        assert_eq!(retail_drop(negative), Some(DropReason::NonPositiveQuantity));
    }

    #[test]
    fn retail_missing_customer() {
        let empty = "536365,85123A,X,6,2010-12-01 08:26:00,0,,UK";
        let blank = "536365,85123A,X,6,2010-12-01 08:26:00,2.55,  ,UK";
        assert_eq!(retail_drop(empty), Some(DropReason::MissingCustomer));
        assert_eq!(retail_drop(blank), Some(DropReason::MissingCustomer));
    }

    #[test]
    fn retail_non_positive_price() {
        let zero = "536365,85123A,X,6,2010-12-01 08:26:00,0,17850,UK";
        let negative = "A563185,B,Adjust bad debt,1,2011-08-12 14:50:00,-11062.06,17850,UK";
        assert_eq!(retail_drop(zero), Some(DropReason::NonPositivePrice));
        assert_eq!(retail_drop(negative), Some(DropReason::NonPositivePrice));
    }

    #[test]
    fn retail_non_product_code() {
        for code in ["POST", "DOT", "M", "C2", "BANK CHARGES", "gift_0001_20", "DCGS0003"] {
            let row = format!("536365,{code},X,1,2010-12-01 08:26:00,18.00,17850,UK");
            assert_eq!(retail_drop(&row), Some(DropReason::NonProductCode), "code: {code}");
        }
    }

    #[test]
    fn retail_duplicate_dropped() {
        let (rows, report) = retail(&format!("{GOOD_ROW}{GOOD_ROW}"));
        assert_eq!(rows.len(), 1);
        assert_eq!(report.dropped.get(&DropReason::Duplicate), Some(&1));
    }

    #[test]
    fn retail_duplicate_after_normalising() {
        let spelled_differently =
            "536365 ,85123a,  WHITE HANGING HEART T-LIGHT HOLDER ,6.0,2010-12-01 08:26:00,2.550,17850.0,United Kingdom\n";
        let (rows, report) = retail(&format!("{GOOD_ROW}{spelled_differently}"));
        assert_eq!(rows.len(), 1);
        assert_eq!(report.dropped.get(&DropReason::Duplicate), Some(&1));
    }

    #[test]
    fn retail_duplicate_needs_same_country() {
        let other_country = GOOD_ROW.replace("United Kingdom", "France");
        let (rows, report) = retail(&format!("{GOOD_ROW}{other_country}"));
        assert_eq!(rows.len(), 2);
        assert_eq!(report.dropped.get(&DropReason::Duplicate), None);
    }

    #[test]
    fn retail_duplicate_only_of_kept_rows() {
        // Both copies lack a customer. The second counts as MissingCustomer, not Duplicate,
        // because rows are compared only with kept rows.
        let guest = "536365,85123A,X,6,2010-12-01 08:26:00,2.55,,UK\n";
        let (rows, report) = retail(&format!("{guest}{guest}"));
        assert_eq!(rows.len(), 0);
        assert_eq!(report.dropped.get(&DropReason::MissingCustomer), Some(&2));
        assert_eq!(report.dropped.get(&DropReason::Duplicate), None);
    }

    #[test]
    fn retail_customer_float_normalised() {
        let row = "536365,85123A,X,6,2010-12-01 08:26:00,2.55,17850.0,UK\n";
        let (rows, _) = retail(row);
        assert_eq!(rows[0].user_id, "17850");
    }

    #[test]
    fn customer_id_normalisation() {
        assert_eq!(normalise_customer_id("17850"), "17850");
        assert_eq!(normalise_customer_id("17850.0"), "17850");
        assert_eq!(normalise_customer_id("17850.00"), "17850");
        assert_eq!(normalise_customer_id("17850."), "17850");
        assert_eq!(normalise_customer_id("17850.5"), "17850.5");
        assert_eq!(normalise_customer_id("abc.0"), "abc.0");
        assert_eq!(normalise_customer_id(".0"), ".0");
    }

    #[test]
    fn retail_item_id_uppercased() {
        let row = "536365,85123a,X,6,2010-12-01 08:26:00,2.55,17850,UK\n";
        let (rows, _) = retail(row);
        assert_eq!(rows[0].item_id, "85123A");
    }

    #[test]
    fn retail_description_trimmed() {
        let rows_text = "536365,85123A,  HEART  ,6,2010-12-01 08:26:00,2.55,17850,UK\n\
                         536365,71053,LANTERN,6,2010-12-01 08:26:00,3.39,17850,UK\n\
                         536365,84406B,,8,2010-12-01 08:26:00,2.75,17850,UK\n";
        let (rows, report) = retail(rows_text);
        assert_eq!(rows[0].title.as_deref(), Some("HEART"));
        assert_eq!(rows[1].title.as_deref(), Some("LANTERN"));
        assert_eq!(rows[2].title, None);
        assert_eq!(report.descriptions_trimmed, 1);
    }

    #[test]
    fn retail_quoted_description() {
        let row = "536365,85123A,\"HEART, WHITE\",6,2010-12-01 08:26:00,2.55,17850,UK\n";
        let (rows, _) = retail(row);
        assert_eq!(rows[0].title.as_deref(), Some("HEART, WHITE"));
    }

    #[test]
    fn header_with_bom() {
        let (rows, report) = read(&format!("\u{feff}{RETAIL_HEADER}{GOOD_ROW}"));
        assert_eq!(report.format, InputFormat::OnlineRetail);
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn header_with_spaces() {
        let header = " InvoiceNo , StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country \r\n";
        let (rows, report) = read(&format!("{header}{GOOD_ROW}"));
        assert_eq!(report.format, InputFormat::OnlineRetail);
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn header_unknown_message() {
        let error = read_interactions_from("user,item,time\nu1,i1,0\n".as_bytes()).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, IngestError::UnknownHeader { .. }));
        assert!(message.contains("\"user,item,time\""), "{message}");
        assert!(message.contains("InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"), "{message}");
        assert!(message.contains("user_id,item_id,timestamp"), "{message}");
        assert!(message.contains(",weight"), "{message}");
    }

    #[test]
    fn header_extra_column_unknown() {
        let result = read_interactions_from("user_id,item_id,timestamp,score\n".as_bytes());
        assert!(matches!(result, Err(IngestError::UnknownHeader { .. })));
    }

    #[test]
    fn empty_input_unknown_header() {
        let error = read_interactions_from(&b""[..]).unwrap_err();
        assert!(error.to_string().contains("(empty file)"), "{error}");
    }

    #[test]
    fn header_only_no_rows() {
        let (rows, report) = read(RETAIL_HEADER);
        assert!(rows.is_empty());
        assert_eq!(report.rows_read, 0);
    }

    #[test]
    fn gzip_stream_detected() {
        let compressed = gzip(format!("{RETAIL_HEADER}{GOOD_ROW}").as_bytes());
        let (rows, _) = read_interactions_from(compressed.as_slice()).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn gzip_multiple_members() {
        let mut compressed = gzip(RETAIL_HEADER.as_bytes());
        compressed.extend(gzip(GOOD_ROW.as_bytes()));
        let (rows, _) = read_interactions_from(compressed.as_slice()).unwrap();
        assert_eq!(rows.len(), 1);
    }

    #[test]
    fn gzip_truncated_error() {
        let compressed = gzip(format!("{RETAIL_HEADER}{}", GOOD_ROW.repeat(50)).as_bytes());
        let truncated = &compressed[..compressed.len() / 2];
        let error = read_interactions_from(truncated).unwrap_err();
        assert!(matches!(error, IngestError::Csv { .. }), "{error}");
    }

    #[test]
    fn file_detection_ignores_name() {
        let text = format!("{RETAIL_HEADER}{GOOD_ROW}");
        let gzip_named_csv = temp_file("gzip.csv", &gzip(text.as_bytes()));
        let plain_named_gz = temp_file("plain.csv.gz", text.as_bytes());

        let from_gzip = read_interactions(&gzip_named_csv);
        let from_plain = read_interactions(&plain_named_gz);
        std::fs::remove_file(&gzip_named_csv).unwrap();
        std::fs::remove_file(&plain_named_gz).unwrap();

        assert_eq!(from_gzip.unwrap().0.len(), 1);
        assert_eq!(from_plain.unwrap().0.len(), 1);
    }

    #[test]
    fn file_missing_names_path() {
        let path = Path::new("/nonexistent/shoprec/retail.csv.gz");
        let error = read_interactions(path).unwrap_err();
        assert!(matches!(error, IngestError::Io { .. }));
        assert!(error.to_string().contains("/nonexistent/shoprec/retail.csv.gz"), "{error}");
    }

    #[test]
    fn product_code_rule() {
        for code in ["22423", "85123A", "85123a", "15056BL", "84997c"] {
            assert!(is_product_code(code), "{code}");
        }
        for code in ["POST", "M", "C2", "DCGS0003", "gift_0001_20", "8512", "85123A1", " 85123A", ""] {
            assert!(!is_product_code(code), "{code}");
        }
    }

    #[test]
    fn generic_without_weight() {
        let (rows, report) = read("user_id,item_id,timestamp\nu1,i1,2010-12-01 08:26:00\n");
        assert_eq!(report.format, InputFormat::Interactions);
        assert_eq!(rows[0].user_id, "u1");
        assert_eq!(rows[0].item_id, "i1");
        assert_eq!(rows[0].quantity, 1.0);
        assert_eq!(rows[0].unit_price, None);
        assert_eq!(rows[0].title, None);
        assert_eq!(rows[0].basket_id, None);
    }

    #[test]
    fn generic_with_weight() {
        let (rows, _) = read("user_id,item_id,timestamp,weight\nu1,i1,0,2.5\nu1,i2,0,\n");
        assert_eq!(rows[0].quantity, 2.5);
        assert_eq!(rows[1].quantity, 1.0);
    }

    #[test]
    fn generic_timestamp_forms() {
        let cases = [
            ("2010-12-01 08:26:00", GOOD_ROW_TIME),
            ("2010-12-01T08:26:00Z", GOOD_ROW_TIME),
            ("2010-12-01T09:26:00.750+01:00", GOOD_ROW_TIME),
            ("1291191960", GOOD_ROW_TIME),
            ("-60", -60),
        ];
        for (text, expected) in cases {
            let (rows, _) = read(&format!("user_id,item_id,timestamp\nu1,i1,{text}\n"));
            assert_eq!(rows.len(), 1, "timestamp: {text}");
            assert_eq!(rows[0].timestamp, expected, "timestamp: {text}");
        }
    }

    #[test]
    fn generic_malformed() {
        let cases = [
            ("bad timestamp", "u1,i1,yesterday,1"),
            ("float timestamp", "u1,i1,1291191960.5,1"),
            ("timestamp without zone", "u1,i1,2010-12-01T08:26:00,1"),
            ("bad weight", "u1,i1,0,heavy"),
            ("NaN weight", "u1,i1,0,NaN"),
            ("empty user", " ,i1,0,1"),
            ("empty item", "u1,,0,1"),
            ("missing weight field", "u1,i1,0"),
        ];
        for (case, row) in cases {
            let (_, report) = read(&format!("user_id,item_id,timestamp,weight\n{row}\n"));
            assert_eq!(report.dropped.get(&DropReason::Malformed), Some(&1), "case: {case}");
        }
    }

    #[test]
    fn generic_non_positive_weight() {
        let (_, report) = read("user_id,item_id,timestamp,weight\nu1,i1,0,0\nu1,i1,0,-1\n");
        assert_eq!(report.dropped.get(&DropReason::NonPositiveQuantity), Some(&2));
    }

    #[test]
    fn generic_duplicates() {
        let text = "user_id,item_id,timestamp,weight\n\
                    u1,i1,1291191960,1\n\
                    u1,i1,2010-12-01 08:26:00,1.0\n\
                    u1,i1,1291191960,2\n";
        let (rows, report) = read(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(report.dropped.get(&DropReason::Duplicate), Some(&1));
    }

    #[test]
    fn report_totals_and_display() {
        let rows_text = format!("{GOOD_ROW}{GOOD_ROW}C536379,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK\n");
        let (_, report) = retail(&rows_text);
        assert_eq!(report.dropped_total(), 2);
        assert_eq!(report.to_string(), "online_retail: 3 rows read, 1 kept, 2 dropped (cancelled 1, duplicate 1)");
    }

    #[test]
    fn drop_reason_labels() {
        let labels: Vec<&str> = DropReason::ALL.iter().map(DropReason::label).collect();
        assert_eq!(
            labels,
            ["malformed", "cancelled", "non_positive_quantity", "missing_customer", "non_positive_price", "non_product_code", "duplicate"]
        );
    }

    /// Checks the counts on the full UCI Online Retail file. Runs only when `SHOPREC_DATA`
    /// names that file, and the figures hold only for that exact file (541,909 rows).
    #[test]
    fn real_data_counts() {
        let Some(path) = std::env::var_os("SHOPREC_DATA") else {
            println!("skipped real_data_counts: set SHOPREC_DATA to the Online Retail CSV to run it");
            return;
        };

        let started = std::time::Instant::now();
        let (rows, report) = read_interactions(Path::new(&path)).unwrap();
        println!("read {} in {:?}: {report}", Path::new(&path).display(), started.elapsed());

        assert_eq!(report.format, InputFormat::OnlineRetail);
        assert_eq!(report.rows_read, 541_909);
        assert_eq!(report.rows_kept, 391_150);
        assert_eq!(rows.len(), 391_150);
        let dropped = |reason| report.dropped.get(&reason).copied().unwrap_or(0);
        assert_eq!(dropped(DropReason::Malformed), 0);
        assert_eq!(dropped(DropReason::Cancelled), 9_288);
        assert_eq!(dropped(DropReason::NonPositiveQuantity), 1_336);
        assert_eq!(dropped(DropReason::MissingCustomer), 133_361);
        assert_eq!(dropped(DropReason::NonPositivePrice), 40);
        assert_eq!(dropped(DropReason::NonProductCode), 1_547);
        assert_eq!(dropped(DropReason::Duplicate), 5_187);
        assert_eq!(report.descriptions_trimmed, 83_444);

        let users: rustc_hash::FxHashSet<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        let items: rustc_hash::FxHashSet<&str> = rows.iter().map(|r| r.item_id.as_str()).collect();
        let baskets: rustc_hash::FxHashSet<&str> = rows.iter().filter_map(|r| r.basket_id.as_deref()).collect();
        assert_eq!(users.len(), 4_334);
        assert_eq!(items.len(), 3_659);
        assert_eq!(baskets.len(), 18_402);
    }
}
