//! gRPC contracts between wasmgate and its drivers, generated from `proto/`.
//!
//! The generated code lives in private modules; the public items are
//! re-exported by package.
#![allow(missing_docs, unused_qualifications, missing_debug_implementations)]

mod generated {
    pub mod sandbox_v1 {
        tonic::include_proto!("sandbox.v1");
    }
    pub mod credentials_v1 {
        tonic::include_proto!("credentials.v1");
    }
}

/// The sample sandbox compute API (`sandbox.v1`).
pub mod sandbox {
    pub use crate::generated::sandbox_v1::*;
}

/// The credentials driver contract (`credentials.v1`).
pub mod credentials {
    pub use crate::generated::credentials_v1::*;
}
