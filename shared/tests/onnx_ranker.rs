//! The exported ONNX ranker, run by ONNX Runtime through `ort`, scores exactly
//! as the trainer's own model does.

mod common;

use shoprec::model::RankerContract;
use shoprec::ranker::Ranker;
use shoprec::recommend::{Scorer, FEATURE_COUNT};
use shoprec::train::onnx::{self, export_mlp};
use shoprec::train::ranker::MlpModel;

fn contract() -> RankerContract {
    onnx::contract(serde_json::Value::Null)
}

#[test]
fn onnx_scores_match_trainer_within_1e5() {
    let (trained, _) = common::train_synthetic();
    let onnx = export_mlp(&trained.ranker, "test").unwrap();
    let ranker = Ranker::load(&onnx, &contract()).unwrap();

    let rows = 1_000;
    let features: Vec<f32> = (0..rows * FEATURE_COUNT).map(|i| ((i * 7919) % 1000) as f32 / 250.0 - 1.0).collect();
    let expected = trained.ranker.score(&features, rows).unwrap();
    let actual = ranker.score(&features, rows).unwrap();
    assert_eq!(actual.len(), rows);
    for (row, (a, e)) in actual.iter().zip(&expected).enumerate() {
        assert!((a - e).abs() < 1e-5, "row {row}: onnx {a} vs trainer {e}");
    }
}

#[test]
fn ranker_rejects_other_feature_contract() {
    let model = MlpModel {
        mean: [0.0; FEATURE_COUNT],
        scale: [1.0; FEATURE_COUNT],
        hidden: 2,
        w1: vec![0.5; FEATURE_COUNT * 2],
        b1: vec![0.0; 2],
        w2: vec![1.0; 2],
        b2: 0.0,
    };
    let onnx = export_mlp(&model, "test").unwrap();
    let mut reordered = contract();
    reordered.features.swap(0, 1);
    let error = Ranker::load(&onnx, &reordered).unwrap_err();
    assert!(error.to_string().contains("features"), "{error}");
}

#[test]
fn ranker_rejects_invalid_model_bytes() {
    let error = Ranker::load(b"not an onnx model", &contract()).unwrap_err();
    assert!(error.to_string().contains("ONNX"), "{error}");
}
