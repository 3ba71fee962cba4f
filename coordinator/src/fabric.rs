//! The Fabric service: one bidirectional session per worker. The first message must be a
//! hello in this protocol version; clock pings are answered at once; acks and reports go
//! to the run holding the worker; the session's end is reported to that run as a loss.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use rackload_proto::v1::coordinator_message::Msg as CMsg;
use rackload_proto::v1::fabric_server::Fabric;
use rackload_proto::v1::worker_message::Msg as WMsg;
use rackload_proto::v1::{ClockPong, CoordinatorMessage, Refused, Welcome, WorkerMessage};
use rackload_proto::{BUILD_VERSION, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::registry::{Registry, WorkerEvent};
use rackload_proto::time::unix_nanos;

/// A worker silent for this long is declared lost.
pub(crate) const HEARTBEAT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

pub struct FabricService {
    registry: Arc<Registry>,
    live: Arc<crate::metrics::Live>,
    /// The shared token, to prove this coordinator knows it (see `auth::proof`).
    token: Option<String>,
}

impl FabricService {
    pub fn new(
        registry: Arc<Registry>,
        live: Arc<crate::metrics::Live>,
        token: Option<String>,
    ) -> FabricService {
        FabricService {
            registry,
            live,
            token,
        }
    }
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

fn msg(m: CMsg) -> Result<CoordinatorMessage, Status> {
    Ok(CoordinatorMessage { msg: Some(m) })
}

#[tonic::async_trait]
impl Fabric for FabricService {
    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<WorkerMessage>>,
    ) -> Result<Response<SessionStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("session closed before hello"))?;
        let Some(WMsg::Hello(hello)) = first.msg else {
            return Err(Status::invalid_argument(
                "the first message must be a hello",
            ));
        };
        let (tx, rx) = mpsc::channel(256);
        let out: SessionStream = Box::pin(ReceiverStream::new(rx));
        if hello.protocol_version != PROTOCOL_VERSION {
            let reason = format!(
                "protocol version {} is not this coordinator's {} (coordinator {}, worker {}); run the same rackload version on both",
                hello.protocol_version, PROTOCOL_VERSION, BUILD_VERSION, hello.build_version
            );
            tracing::warn!(worker = %hello.worker_id, %peer, "refused: {reason}");
            let _ = tx.send(msg(CMsg::Refused(Refused { reason }))).await;
            return Ok(Response::new(out));
        }
        if let Err(reason) = rackload_proto::worker_id::check_worker_id(&hello.worker_id) {
            // Logged escaped: the id is what was wrong.
            tracing::warn!(worker = ?hello.worker_id, %peer, "refused: {reason}");
            let _ = tx.send(msg(CMsg::Refused(Refused { reason }))).await;
            return Ok(Response::new(out));
        }
        let id = hello.worker_id.clone();
        let proof = self
            .token
            .as_deref()
            .map(|t| rackload_proto::auth::proof(t, &hello.nonce))
            .unwrap_or_default();
        // The welcome goes first: once registered, a waiting run may claim this worker and
        // send it a plan at once, and a worker takes no plan before it is welcomed.
        let _ = tx
            .send(msg(CMsg::Welcome(Welcome {
                protocol_version: PROTOCOL_VERSION,
                coordinator_version: BUILD_VERSION.to_owned(),
                proof,
            })))
            .await;
        let session = match self.registry.register(hello, peer.clone(), tx.clone()) {
            Ok(s) => s,
            Err(reason) => {
                tracing::warn!(worker = %id, %peer, "refused: {reason}");
                let _ = tx.send(msg(CMsg::Refused(Refused { reason }))).await;
                return Ok(Response::new(out));
            }
        };
        tracing::info!(worker = %id, %peer, "worker connected");
        let (registry, live) = (self.registry.clone(), self.live.clone());
        tokio::spawn(async move {
            let reason = loop {
                // Any message proves life; workers send a heartbeat every second.
                let m = match tokio::time::timeout(HEARTBEAT_TIMEOUT, inbound.message()).await {
                    Err(_) => break format!("no heartbeat for {} s", HEARTBEAT_TIMEOUT.as_secs()),
                    Ok(Ok(Some(m))) => m,
                    Ok(Ok(None)) => break "session closed".to_owned(),
                    Ok(Err(status)) => break format!("session broke: {}", status.message()),
                };
                let event = match m.msg {
                    Some(WMsg::Heartbeat(_)) => continue,
                    Some(WMsg::Ping(p)) => {
                        let pong = CMsg::Pong(ClockPong {
                            nonce: p.nonce,
                            worker_unix_nanos: p.worker_unix_nanos,
                            coordinator_unix_nanos: unix_nanos(),
                        });
                        let _ = tx.send(msg(pong)).await;
                        continue;
                    }
                    Some(WMsg::PlanAck(a)) => WorkerEvent::Ack(id.clone(), a),
                    Some(WMsg::Interval(r)) => WorkerEvent::Interval(id.clone(), r),
                    Some(WMsg::Final(r)) => WorkerEvent::Final(id.clone(), r),
                    Some(WMsg::Hello(_)) | None => continue,
                };
                match registry.inbox_of(&id) {
                    Some(inbox) => {
                        let _ = inbox.send(event).await;
                    }
                    None => tracing::debug!(worker = %id, "message from an idle worker dropped"),
                }
            };
            tracing::info!(worker = %id, "worker disconnected: {reason}");
            live.session_ended();
            if let Some(inbox) = registry.remove(&id, session) {
                let _ = inbox.send(WorkerEvent::Lost(id, reason)).await;
            }
        });
        Ok(Response::new(out))
    }
}
