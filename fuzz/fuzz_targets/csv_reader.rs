//! Feeds arbitrary bytes to the CSV reader, plain and behind either header.
//! It may reject input but never panic, and every kept row must be usable.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shoprec::ingest::{read_interactions_from, ONLINE_RETAIL_HEADER};

fn check(input: &[u8]) {
    let Ok((rows, report)) = read_interactions_from(input) else { return };
    assert_eq!(report.rows_kept, rows.len() as u64);
    assert_eq!(report.rows_read, report.rows_kept + report.dropped_total());
    for row in &rows {
        assert!(!row.user_id.is_empty(), "empty user id kept");
        assert!(!row.item_id.is_empty(), "empty item id kept");
        assert!(row.quantity > 0.0, "quantity {} kept", row.quantity);
        assert!(row.quantity.is_finite(), "quantity {} kept", row.quantity);
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    let retail = [ONLINE_RETAIL_HEADER.join(",").as_bytes(), b"\n", data].concat();
    check(&retail);
    let generic = [b"user_id,item_id,timestamp,weight\n".as_slice(), data].concat();
    check(&generic);
});
