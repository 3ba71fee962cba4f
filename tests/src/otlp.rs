//! A real OTLP trace receiver for the tests: the collector's gRPC `TraceService` (from
//! `opentelemetry-proto`) and the HTTP/protobuf `POST /v1/traces`, both on loopback, keeping
//! every span they receive in a flat, easy-to-query form.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value as Av;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use prost::Message as _;

/// One received span.
#[derive(Clone, Debug)]
pub struct SpanRec {
    pub service: String,
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent: String,
    pub name: String,
    /// OTLP span kind (1 internal, 2 server, 3 client).
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    pub events: Vec<String>,
    pub start_unix_nanos: u64,
    pub end_unix_nanos: u64,
    /// OTLP status code (2 = error).
    pub status: i32,
}

impl SpanRec {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }

    /// The W3C traceparent that names this span as a parent.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-01", self.trace_id, self.span_id)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(Av::StringValue(s)) => s.clone(),
        Some(Av::BoolValue(b)) => b.to_string(),
        Some(Av::IntValue(i)) => i.to_string(),
        Some(Av::DoubleValue(d)) => d.to_string(),
        Some(Av::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(|v| text(&Some(v.clone()))).collect();
            format!("[{}]", items.join(","))
        }
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn attrs(kv: &[KeyValue]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

type Store = Arc<Mutex<Vec<SpanRec>>>;

fn keep(store: &Store, req: ExportTraceServiceRequest) {
    let mut out = Vec::new();
    for rs in req.resource_spans {
        let resource = rs
            .resource
            .map(|r| attrs(&r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                out.push(SpanRec {
                    service: service.clone(),
                    trace_id: hex(&s.trace_id),
                    span_id: hex(&s.span_id),
                    parent: hex(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: attrs(&s.attributes),
                    events: s.events.into_iter().map(|e| e.name).collect(),
                    start_unix_nanos: s.start_time_unix_nano,
                    end_unix_nanos: s.end_time_unix_nano,
                    status: s.status.map_or(0, |st| st.code),
                });
            }
        }
    }
    if let Ok(mut s) = store.lock() {
        s.extend(out);
    }
}

struct Grpc(Store);

#[tonic::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver; stops when dropped (its runtime goes with it).
pub struct OtlpReceiver {
    /// For `--otlp-endpoint` with gRPC.
    pub grpc_url: String,
    /// For `--otlp-endpoint` with `OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf`.
    pub http_url: String,
    store: Store,
    _runtime: tokio::runtime::Runtime,
}

impl OtlpReceiver {
    pub fn start() -> OtlpReceiver {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("receiver runtime");
        let store: Store = Arc::default();
        let (grpc, http) = runtime.block_on(async {
            let grpc = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            let http = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            (grpc, http)
        });
        let grpc_url = format!("http://{}", grpc.local_addr().expect("addr"));
        let http_url = format!("http://{}", http.local_addr().expect("addr"));
        let s = store.clone();
        runtime.spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(Grpc(s)).max_decoding_message_size(64 << 20))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(grpc))
                .await;
        });
        let s = store.clone();
        let app = axum::Router::new()
            .route(
                "/v1/traces",
                axum::routing::post(move |body: axum::body::Bytes| {
                    let s = s.clone();
                    async move {
                        match ExportTraceServiceRequest::decode(body) {
                            Ok(req) => {
                                keep(&s, req);
                                let resp = ExportTraceServiceResponse {
                                    partial_success: None,
                                };
                                (
                                    axum::http::StatusCode::OK,
                                    [("content-type", "application/x-protobuf")],
                                    resp.encode_to_vec(),
                                )
                            }
                            Err(_) => (
                                axum::http::StatusCode::BAD_REQUEST,
                                [("content-type", "text/plain")],
                                b"not an ExportTraceServiceRequest".to_vec(),
                            ),
                        }
                    }
                }),
            )
            .layer(axum::extract::DefaultBodyLimit::max(64 << 20));
        runtime.spawn(async move {
            let _ = axum::serve(http, app).await;
        });
        OtlpReceiver {
            grpc_url,
            http_url,
            store,
            _runtime: runtime,
        }
    }

    /// How many spans were received so far.
    pub fn span_count(&self) -> usize {
        self.store.lock().map_or(0, |s| s.len())
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanRec> {
        self.store.lock().map(|s| s.clone()).unwrap_or_default()
    }
}
