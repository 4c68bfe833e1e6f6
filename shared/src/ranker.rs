//! The ONNX ranker run by ONNX Runtime through `ort`.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use ort::environment::Environment;
use ort::session::Session;
use ort::value::Tensor;

use crate::error::{Error, Result};
use crate::model::RankerContract;
use crate::recommend::{Scorer, FEATURE_COUNT, FEATURE_NAMES};

/// File name of the ONNX Runtime library that the functions ship.
pub const ONNXRUNTIME_LIBRARY: &str = "libonnxruntime.so.1.31.1";

/// Layer folder where the template's ONNX Runtime layer puts the library.
const LAYER_LIBRARY_DIR: &str = "/opt/lib";

static ENVIRONMENT: OnceLock<std::result::Result<Environment, String>> = OnceLock::new();

/// Finds the ONNX Runtime library: `ORT_DYLIB_PATH`, then beside the executable,
/// then in the Lambda layer folder.
pub fn onnxruntime_library_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|path| !path.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let beside_executable = std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join(ONNXRUNTIME_LIBRARY)));
    beside_executable.into_iter().chain(std::iter::once(Path::new(LAYER_LIBRARY_DIR).join(ONNXRUNTIME_LIBRARY))).find(|path| path.is_file())
}

fn environment() -> Result<&'static Environment> {
    let environment = ENVIRONMENT.get_or_init(|| {
        let path = onnxruntime_library_path().ok_or_else(|| {
            format!("{ONNXRUNTIME_LIBRARY} not found: set ORT_DYLIB_PATH, or put it beside the executable or in {LAYER_LIBRARY_DIR}")
        })?;
        ort::init_from(&path)
            .map_err(|error| format!("could not load ONNX Runtime from {}: {error}", path.display()))?
            .with_name("shoprec")
            .build()
            .map_err(|error| format!("could not create the ONNX Runtime environment: {error}"))
    });
    environment.as_ref().map_err(|message| Error::Ranker(message.clone()))
}

/// Loads ONNX Runtime and creates its environment, as the first model load
/// would. Called on a thread at start-up, it overlaps that work with the
/// function's first reads from DynamoDB and S3.
pub fn prepare_runtime() -> Result<()> {
    environment().map(|_| ())
}

/// A loaded ranking model checked against its contract.
pub struct Ranker {
    session: Mutex<Session>,
    input: String,
    output: String,
}

impl std::fmt::Debug for Ranker {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Ranker").field("input", &self.input).field("output", &self.output).finish_non_exhaustive()
    }
}

impl Ranker {
    /// Loads an ONNX model and checks that its contract lists the features this
    /// build computes, in the same order.
    pub fn load(model: &[u8], contract: &RankerContract) -> Result<Self> {
        if contract.features != FEATURE_NAMES {
            return Err(Error::Ranker(format!(
                "the model expects features {:?} but this build computes {:?}: publish a model trained for this version",
                contract.features, FEATURE_NAMES
            )));
        }
        let builder = Session::builder(environment()?).map_err(|error| Error::Ranker(format!("could not create a session: {error}")))?;
        let mut builder =
            builder.with_intra_threads(1).map_err(|error| Error::Ranker(format!("could not configure the session: {error}")))?;
        let session =
            builder.commit_from_memory(model).map_err(|error| Error::Ranker(format!("could not load the ONNX model: {error}")))?;

        let has_input = session.inputs().iter().any(|input| input.name() == contract.input);
        let has_output = session.outputs().iter().any(|output| output.name() == contract.output);
        if !has_input || !has_output {
            return Err(Error::Ranker(format!(
                "the ONNX model lacks input {:?} or output {:?} named in the manifest",
                contract.input, contract.output
            )));
        }
        Ok(Ranker { session: Mutex::new(session), input: contract.input.clone(), output: contract.output.clone() })
    }
}

impl Scorer for Ranker {
    fn score(&self, features: &[f32], rows: usize) -> Result<Vec<f32>> {
        if rows == 0 {
            return Ok(Vec::new());
        }
        let tensor = Tensor::from_array(([rows, FEATURE_COUNT], features[..rows * FEATURE_COUNT].to_vec()))
            .map_err(|error| Error::Ranker(format!("could not build the input tensor: {error}")))?;
        let mut session = self.session.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|error| Error::Ranker(format!("inference failed: {error}")))?;
        let (_, scores) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|error| Error::Ranker(format!("unexpected output tensor: {error}")))?;
        if scores.len() != rows {
            return Err(Error::Ranker(format!("the model returned {} scores for {rows} candidates", scores.len())));
        }
        Ok(scores.to_vec())
    }
}
