//! tower around each request of a shard, never around a token: the whole-request timeout
//! (`Timeout`, per endpoint, so a timed-out request is still counted against the endpoint
//! it went to), the choice of endpoint (the target's round-robin or least-outstanding
//! pick, or tower's power-of-two-choices `Balance` over pending requests for `--lb p2c`),
//! and the worker's `--max-rate` enforced while the load runs (`RateLimit`). The open
//! loop's in-flight cap is tower's `ConcurrencyLimit` too ([`crate::schedule`]).
//!
//! A request's scratch buffer for its inter-token samples travels in the [`Call`] and
//! back in the [`Sent`], so the per-token path still allocates nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use rackload_proto::v1::LoadBalance;
use rackload_workloads::RequestSpec;
use rackload_workloads::prompt::Prompt;
use tower::balance::p2c::Balance;
use tower::buffer::Buffer;
use tower::discover::ServiceList;
use tower::limit::RateLimitLayer;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::timeout::Timeout;
use tower::timeout::error::Elapsed;
use tower::util::BoxCloneSyncService;
use tower::{BoxError, ServiceBuilder, ServiceExt};

use crate::error::ErrorClass;
use crate::target::{Completed, Failed, Gap, OpenAiTarget};

/// One request to send.
#[derive(Debug)]
pub struct Call {
    pub req: RequestSpec,
    pub prompt: Prompt,
    /// The task's scratch buffer for chunk gaps (returned in [`Sent`]).
    pub gaps: Vec<Gap>,
    pub traceparent: Option<HeaderValue>,
}

/// A request's outcome and the scratch buffer, filled.
#[derive(Debug)]
pub struct Sent {
    pub result: Result<Completed, Failed>,
    pub gaps: Vec<Gap>,
}

/// The stack a shard's requests go through.
pub type SendService = BoxCloneSyncService<Call, Sent, BoxError>;

/// Requests in the queue of a buffered stack (more wait in their tasks).
const BUFFER: usize = 1024;

/// An endpoint under the request timeout: a timeout is a failed request of that endpoint
/// (its scratch buffer is lost with the dropped request; a new one grows on next use).
fn endpoint_stack(target: &Arc<OpenAiTarget>, k: usize) -> SendService {
    let target_k = target.clone();
    let endpoint = tower::service_fn(move |mut call: Call| {
        let target = target_k.clone();
        async move {
            let result = target
                .send_to(k, &call.req, &call.prompt, &mut call.gaps, call.traceparent)
                .await;
            Ok::<_, Infallible>(Sent {
                result,
                gaps: call.gaps,
            })
        }
    });
    match target.request_timeout() {
        None => BoxCloneSyncService::new(endpoint.map_err(BoxError::from)),
        Some(t) => BoxCloneSyncService::new(Timeout::new(endpoint, t).map_result(move |r| {
            r.or_else(|e| {
                if e.is::<Elapsed>() {
                    let mut f = Failed::new(ErrorClass::Timeout, timed_out(t));
                    f.endpoint = Some(k);
                    Ok(Sent {
                        result: Err(f),
                        gaps: Vec::new(),
                    })
                } else {
                    Err(e)
                }
            })
        })),
    }
}

fn timed_out(t: Duration) -> String {
    format!("request took longer than {:.1} s", t.as_secs_f64())
}

/// The send stack of a shard of `target`, with this worker's `--max-rate` if any.
pub fn send_stack(target: &Arc<OpenAiTarget>, max_rate: Option<f64>) -> SendService {
    let mut endpoints: Vec<SendService> = (0..target.endpoint_count())
        .map(|k| endpoint_stack(target, k))
        .collect();
    let rate = max_rate.map(|r| {
        // At most ⌊r⌋ sends a second (one every 1/r s below 1 req/s).
        let (n, per) = if r >= 1.0 {
            (r.floor() as u64, Duration::from_secs(1))
        } else {
            (1, Duration::from_secs_f64(1.0 / r.max(1e-6)))
        };
        RateLimitLayer::new(n, per)
    });
    if target.lb() == LoadBalance::P2c && endpoints.len() > 1 {
        // tower's balancer takes &mut to pick, so the shard's tasks share it through a
        // buffer: one channel hop per request.
        let pending: Vec<_> = endpoints
            .into_iter()
            .map(|e| PendingRequests::new(e, CompleteOnResponse::default()))
            .collect();
        let balance = Balance::new(ServiceList::new(pending));
        let stack = ServiceBuilder::new().option_layer(rate).service(balance);
        return BoxCloneSyncService::new(Buffer::new(stack, BUFFER));
    }
    if rate.is_none() && endpoints.len() == 1 {
        // One endpoint, no rate: nothing to pick, nothing to share.
        return endpoints.swap_remove(0);
    }
    // The target's own pick (round-robin, least outstanding) over the endpoints' stacks.
    let endpoints: Arc<[SendService]> = endpoints.into();
    let target = target.clone();
    let picker =
        tower::service_fn(move |call: Call| endpoints[target.pick()].clone().oneshot(call));
    match rate {
        // A rate is one budget for the whole shard: its tasks share it through a buffer.
        Some(rate) => BoxCloneSyncService::new(Buffer::new(
            ServiceBuilder::new().layer(rate).service(picker),
            BUFFER,
        )),
        None => BoxCloneSyncService::new(picker),
    }
}

/// Sends `call` through `stack`; a failure of the stack itself (not of the request) is a
/// failed request that says so.
pub async fn send(stack: &SendService, call: Call) -> Sent {
    match stack.clone().oneshot(call).await {
        Ok(sent) => sent,
        Err(e) => Sent {
            result: Err(Failed::new(
                ErrorClass::Connect,
                format!("request not sent: {e}"),
            )),
            gaps: Vec::new(),
        },
    }
}
