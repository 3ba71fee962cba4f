//! Compiles `rackload/v1/*.proto` with protox (pure Rust), so a fresh machine needs no
//! system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "rackload/v1/common.proto",
        "rackload/v1/fabric.proto",
        "rackload/v1/control.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["."])?;
    let serde = "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default)]";
    tonic_prost_build::configure()
        .type_attribute("rackload.v1.RunSpec", serde)
        .type_attribute("rackload.v1.TargetSpec", serde)
        .type_attribute("rackload.v1.PointSpec", serde)
        .type_attribute("rackload.v1.Goodput", serde)
        // Secrets never reach results: the key is not serialized.
        .field_attribute("rackload.v1.TargetSpec.api_key", "#[serde(skip)]")
        .field_attribute("rackload.v1.TargetSpec.tls_ca_pem", "#[serde(skip)]")
        // Header values may be credentials: only their names are recorded.
        .field_attribute(
            "rackload.v1.TargetSpec.headers",
            "#[serde(serialize_with = \"crate::convert::header_names\", skip_deserializing)]",
        )
        .field_attribute(
            "rackload.v1.TargetSpec.extra_body_json",
            "#[serde(serialize_with = \"crate::convert::json_bytes\", skip_deserializing)]",
        )
        // Enums are recorded by the names users type.
        .field_attribute(
            "rackload.v1.TargetSpec.endpoint",
            "#[serde(serialize_with = \"crate::names::endpoint\", skip_deserializing)]",
        )
        .field_attribute(
            "rackload.v1.TargetSpec.http",
            "#[serde(serialize_with = \"crate::names::http\", skip_deserializing)]",
        )
        .field_attribute(
            "rackload.v1.TargetSpec.lb",
            "#[serde(serialize_with = \"crate::names::lb\", skip_deserializing)]",
        )
        .field_attribute(
            "rackload.v1.RunSpec.on_worker_loss",
            "#[serde(serialize_with = \"crate::names::on_worker_loss\", skip_deserializing)]",
        )
        // run.json records the workload's provenance, not its bulk (dataset entries).
        .field_attribute(
            "rackload.v1.RunSpec.workload",
            "#[serde(serialize_with = \"crate::convert::workload_provenance\", skip_deserializing)]",
        )
        .compile_fds(fds)?;
    Ok(())
}
