//! Export of the ranking network as an ONNX graph that ONNX Runtime runs.

use onnx_protobuf::{
    tensor_proto::DataType, tensor_shape_proto::dimension, tensor_shape_proto::Dimension, type_proto, GraphProto, Message, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

use super::ranker::MlpModel;
use crate::error::{Error, Result};
use crate::model::{files, RankerContract};
use crate::recommend::{FEATURES, FEATURE_COUNT, FEATURE_NAMES};

/// Name of the graph's input tensor.
pub const INPUT_NAME: &str = "features";

/// Name of the graph's output tensor.
pub const OUTPUT_NAME: &str = "score";

/// ONNX operator set the graph uses; ONNX Runtime 1.31 supports it.
pub const OPSET: i64 = 13;

/// ONNX IR version 8 goes with opset 13.
const IR_VERSION: i64 = 8;

fn float_tensor(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.to_string(),
        dims: dims.to_vec(),
        data_type: DataType::FLOAT as i32,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

fn float_value_info(name: &str, dims: [Dimension; 2]) -> ValueInfoProto {
    let tensor = type_proto::Tensor {
        elem_type: DataType::FLOAT as i32,
        shape: Some(TensorShapeProto { dim: dims.to_vec(), ..Default::default() }).into(),
        ..Default::default()
    };
    ValueInfoProto {
        name: name.to_string(),
        type_: Some(TypeProto { value: Some(type_proto::Value::TensorType(tensor)), ..Default::default() }).into(),
        ..Default::default()
    }
}

fn dim_param(name: &str) -> Dimension {
    Dimension { value: Some(dimension::Value::DimParam(name.to_string())), ..Default::default() }
}

fn dim_value(value: i64) -> Dimension {
    Dimension { value: Some(dimension::Value::DimValue(value)), ..Default::default() }
}

fn node(op_type: &str, inputs: &[&str], output: &str) -> NodeProto {
    NodeProto {
        op_type: op_type.to_string(),
        name: output.to_string(),
        input: inputs.iter().map(|input| input.to_string()).collect(),
        output: vec![output.to_string()],
        ..Default::default()
    }
}

/// Returns the ranker contract of models this module exports, with the training report.
pub fn contract(training: serde_json::Value) -> RankerContract {
    RankerContract {
        file: files::RANKER.to_string(),
        input: INPUT_NAME.to_string(),
        output: OUTPUT_NAME.to_string(),
        features: FEATURE_NAMES.iter().map(|name| name.to_string()).collect(),
        descriptions: FEATURES.iter().map(|(_, description)| description.to_string()).collect(),
        opset: OPSET,
        training,
    }
}

/// Serialises the network as ONNX:
/// `sigmoid(relu(((features - mean) / scale) · w1 + b1) · w2 + b2)`.
///
/// Input `features` is float32 `[N, FEATURE_COUNT]`; output `score` is float32 `[N, 1]`.
pub fn export_mlp(model: &MlpModel, model_version: &str) -> Result<Vec<u8>> {
    let features = FEATURE_COUNT as i64;
    let hidden = model.hidden as i64;
    let graph = GraphProto {
        name: "shoprec_ranker".to_string(),
        node: vec![
            node("Sub", &[INPUT_NAME, "mean"], "centred"),
            node("Div", &["centred", "scale"], "standardised"),
            node("MatMul", &["standardised", "w1"], "hidden_without_bias"),
            node("Add", &["hidden_without_bias", "b1"], "hidden_linear"),
            node("Relu", &["hidden_linear"], "hidden"),
            node("MatMul", &["hidden", "w2"], "logit_without_bias"),
            node("Add", &["logit_without_bias", "b2"], "logit"),
            node("Sigmoid", &["logit"], OUTPUT_NAME),
        ],
        initializer: vec![
            float_tensor("mean", &[features], &model.mean),
            float_tensor("scale", &[features], &model.scale),
            float_tensor("w1", &[features, hidden], &model.w1),
            float_tensor("b1", &[hidden], &model.b1),
            float_tensor("w2", &[hidden, 1], &model.w2),
            float_tensor("b2", &[1], &[model.b2]),
        ],
        input: vec![float_value_info(INPUT_NAME, [dim_param("candidates"), dim_value(features)])],
        output: vec![float_value_info(OUTPUT_NAME, [dim_param("candidates"), dim_value(1)])],
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto { domain: String::new(), version: OPSET, ..Default::default() }],
        producer_name: "shoprec-trainer".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        model_version: 1,
        doc_string: format!("Ranking network of shoprec model version {model_version}"),
        graph: Some(graph).into(),
        ..Default::default()
    };
    model.write_to_bytes().map_err(|error| Error::Training(format!("could not serialise the ONNX ranker: {error}")))
}
