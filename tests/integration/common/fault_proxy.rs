//! A fault-injecting HTTP/1.1 proxy on 127.0.0.1 in front of the local DynamoDB: it
//! answers some requests the way a struggling DynamoDB does (throttling, 5xx, partial
//! `BatchWriteItem`s, slowness, a dropped connection) and forwards the rest, so that the
//! store's and the SDK's handling of them is exercised against a real server.
//!
//! The SDK signs its requests, but the local server ignores signatures, so a forwarded
//! body may be rewritten (with its `Content-Length` recomputed).

use std::collections::BTreeMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// What DynamoDB does to a request, instead of (or before) answering it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 400 `ProvisionedThroughputExceededException`, as a table past its capacity answers.
    ProvisionedThroughputExceeded,
    /// 400 `ThrottlingException`, as the control plane (and on-demand bursts) answer.
    Throttling,
    /// 500 `InternalServerError` or 503 `ServiceUnavailable`.
    ServerError(u16),
    /// A request slower than the client's patience: held until the client gives up on
    /// it (closes the connection at its attempt timeout) and the retry that follows has
    /// been answered, then forwarded: it lands after its retry, as a slow request does.
    /// Driven by those events, not by a time of its own, so that a loaded machine, which
    /// slows every request alike, cannot reorder them.
    Delay,
    /// An answer slower than the client's patience: the request is forwarded at once and
    /// takes effect, its answer is held until the client gives up and tries again.
    SlowAnswer,
    /// `BatchWriteItem`: forwards only the first half of each table's requests and
    /// returns the rest as `UnprocessedItems`, as a hot partition does.
    HalfUnprocessed,
    /// `PutEvents`: forwards every entry but the first and answers the first as not taken
    /// (`InternalFailure`), as EventBridge's partial failures do.
    FirstEntryRefused,
    /// Closes the connection without an answer.
    Hangup,
    /// 400 with this error type and message: a request a strictly validating DynamoDB
    /// rejects (`ValidationException`), or an operation a local server lacks.
    Rejected {
        kind: &'static str,
        message: &'static str,
    },
}

impl Fault {
    fn name(&self) -> String {
        match self {
            Fault::ProvisionedThroughputExceeded => "ProvisionedThroughputExceeded".into(),
            Fault::Throttling => "Throttling".into(),
            Fault::ServerError(status) => format!("ServerError{status}"),
            Fault::Delay => "Delay".into(),
            Fault::SlowAnswer => "SlowAnswer".into(),
            Fault::HalfUnprocessed => "HalfUnprocessed".into(),
            Fault::FirstEntryRefused => "FirstEntryRefused".into(),
            Fault::Hangup => "Hangup".into(),
            Fault::Rejected { kind, .. } => format!("Rejected({kind})"),
        }
    }
}

/// When a fault applies: to requests of one operation (or any), after letting `skip` of
/// them through, to every `every`-th one, at most `times` times.
#[derive(Debug, Clone)]
pub struct Rule {
    operation: Option<&'static str>,
    fault: Fault,
    skip: u32,
    every: u32,
    times: Option<u32>,
    matched: u32,
    fired: u32,
}

impl Rule {
    /// `operation` is the `X-Amz-Target` action, e.g. `"BatchWriteItem"`.
    pub fn on(operation: &'static str, fault: Fault) -> Self {
        Self {
            operation: Some(operation),
            ..Self::any(fault)
        }
    }

    pub fn any(fault: Fault) -> Self {
        Self {
            operation: None,
            fault,
            skip: 0,
            every: 1,
            times: None,
            matched: 0,
            fired: 0,
        }
    }

    pub fn after(mut self, skip: u32) -> Self {
        self.skip = skip;
        self
    }

    pub fn every(mut self, every: u32) -> Self {
        self.every = every.max(1);
        self
    }

    pub fn times(mut self, times: u32) -> Self {
        self.times = Some(times);
        self
    }

    fn applies(&mut self, operation: &str) -> bool {
        if self.operation.is_some_and(|wanted| wanted != operation) {
            return false;
        }
        self.matched += 1;
        if self.matched <= self.skip || !(self.matched - self.skip - 1).is_multiple_of(self.every) {
            return false;
        }
        if self.times.is_some_and(|times| self.fired >= times) {
            return false;
        }
        self.fired += 1;
        true
    }
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<Rule>,
    requests: BTreeMap<String, u32>,
    /// Answers written, by operation: a held request waits for its retry's.
    answered: BTreeMap<String, u32>,
    faults: BTreeMap<String, u32>,
    held_back_items: u32,
    /// `Delay` requests not forwarded yet.
    held: u32,
}

/// The state and what wakes those waiting on it.
#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Changes the state and wakes every waiter.
    fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.lock());
        self.changed.notify_waiters();
        result
    }

    /// Waits until `done` holds of the state, or `limit` passed (a bound for a test that
    /// went wrong, never the condition a test relies on).
    async fn wait_for(&self, limit: Duration, done: impl Fn(&State) -> bool) {
        let _ = tokio::time::timeout(limit, async {
            loop {
                let changed = self.changed.notified();
                if done(&self.lock()) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

/// The longest a held request waits for its retry's answer: only reached when every
/// attempt is held (the client then failed long before).
const HOLD_LIMIT: Duration = Duration::from_secs(60);

/// The proxy; it stops when dropped.
pub struct FaultProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (`http://127.0.0.1:PORT`) with the plan `rules`.
    pub async fn start(upstream: &str, rules: Vec<Rule>) -> Self {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the local DynamoDB speaks plain HTTP")
            .trim_end_matches('/')
            .to_owned();
        assert!(
            upstream.starts_with("127.0.0.1:") || upstream.starts_with("localhost:"),
            "the proxy only forwards to the loopback server, not {upstream}"
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                rules,
                ..State::default()
            }),
            changed: Notify::new(),
        });
        let accepting = Arc::clone(&shared);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = Arc::clone(&accepting);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    // A connection ends with an error when a client gives up on it
                    // (a timeout): nothing to report.
                    let _ = serve(client, &upstream, &shared).await;
                });
            }
        });
        Self {
            address,
            shared,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Replaces the plan; counters are kept.
    pub fn set_rules(&self, rules: Vec<Rule>) {
        self.shared.update(|state| state.rules = rules);
    }

    /// Requests seen for `operation`, faulted or not.
    pub fn requests(&self, operation: &str) -> u32 {
        self.lock().requests.get(operation).copied().unwrap_or(0)
    }

    pub fn total_requests(&self) -> u32 {
        self.lock().requests.values().sum()
    }

    /// Faults injected, by fault name (`"Throttling"`, `"ServerError500"`, ...).
    pub fn faults(&self) -> BTreeMap<String, u32> {
        self.lock().faults.clone()
    }

    pub fn faults_injected(&self) -> u32 {
        self.lock().faults.values().sum()
    }

    /// Write requests returned as `UnprocessedItems` so far.
    pub fn held_back_items(&self) -> u32 {
        self.lock().held_back_items
    }

    /// Waits until every `Delay`ed request has been forwarded (has landed).
    pub async fn settled(&self) {
        self.shared
            .wait_for(HOLD_LIMIT * 2, |state| state.held == 0)
            .await;
        assert_eq!(self.lock().held, 0, "a delayed request was never forwarded");
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.shared.lock()
    }
}

/// One HTTP/1.1 message: start line, headers, body.
#[derive(Debug)]
struct Message {
    start: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The message with `body`, framed by `Content-Length` (hop-by-hop framing dropped,
    /// and the checksum of a body that may have been rewritten).
    fn to_bytes(&self, extra: &[(&str, &str)]) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.start);
        for (key, value) in &self.headers {
            let hop = [
                "content-length",
                "transfer-encoding",
                "connection",
                "x-amz-crc32",
            ]
            .iter()
            .any(|name| key.eq_ignore_ascii_case(name));
            if !hop {
                out.push_str(&format!("{key}: {value}\r\n"));
            }
        }
        for (key, value) in extra {
            out.push_str(&format!("{key}: {value}\r\n"));
        }
        out.push_str(&format!("content-length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

async fn read_message<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    response: bool,
) -> io::Result<Option<Message>> {
    let mut start = String::new();
    if reader.read_line(&mut start).await? == 0 {
        return Ok(None);
    }
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((key, value)) = line.split_once(':') {
            headers.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    let mut message = Message {
        start: start.trim_end().to_owned(),
        headers,
        body: Vec::new(),
    };
    let chunked = message
        .header("transfer-encoding")
        .is_some_and(|value| value.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk).await?;
            if size == 0 {
                break;
            }
            message.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = message.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
        message.body = vec![0; length];
        reader.read_exact(&mut message.body).await?;
    } else if response {
        reader.read_to_end(&mut message.body).await?;
    }
    Ok(Some(message))
}

/// Serves one client connection, request after request (the SDK keeps connections alive).
/// Waits until the client closes its connection (or sends something, which a client
/// waiting for an answer does not), at most [`HOLD_LIMIT`].
async fn hung_up(read: &mut BufReader<OwnedReadHalf>) {
    let _ = tokio::time::timeout(HOLD_LIMIT, read.fill_buf()).await;
}

async fn serve(client: TcpStream, upstream: &str, shared: &Shared) -> io::Result<()> {
    let (read, mut write) = client.into_split();
    let mut read = BufReader::new(read);
    while let Some(request) = read_message(&mut read, false).await? {
        let operation = request
            .header("x-amz-target")
            .and_then(|target| target.rsplit('.').next())
            .unwrap_or("unknown")
            .to_owned();
        let close = request
            .header("connection")
            .is_some_and(|value| value.eq_ignore_ascii_case("close"));
        let fault = shared.update(|state| {
            *state.requests.entry(operation.clone()).or_default() += 1;
            let fault = state
                .rules
                .iter_mut()
                .find_map(|rule| rule.applies(&operation).then(|| rule.fault.clone()));
            if let Some(fault) = &fault {
                *state.faults.entry(fault.name()).or_default() += 1;
            }
            if fault == Some(Fault::Delay) {
                state.held += 1;
            }
            fault
        });
        let response = match fault {
            None => forward(&request, upstream).await?,
            Some(Fault::ProvisionedThroughputExceeded) => error_response(
                400,
                "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
                "The level of configured provisioned throughput for the table was exceeded. \
                 Consider increasing your provisioning level with the UpdateTable API.",
            ),
            Some(Fault::Throttling) => error_response(
                400,
                "com.amazon.coral.availability#ThrottlingException",
                "Rate of requests exceeds the allowed throughput.",
            ),
            Some(Fault::ServerError(status)) => {
                let kind = if status == 503 {
                    "com.amazonaws.dynamodb.v20120810#ServiceUnavailable"
                } else {
                    "com.amazonaws.dynamodb.v20120810#InternalServerError"
                };
                error_response(status, kind, "Internal server error")
            }
            Some(Fault::Delay) => {
                let answered = shared.lock().answered.get(&operation).copied();
                hung_up(&mut read).await;
                shared
                    .wait_for(HOLD_LIMIT, |state| {
                        state.answered.get(&operation).copied() > answered
                    })
                    .await;
                let landed = forward(&request, upstream).await;
                shared.update(|state| state.held -= 1);
                landed?;
                return Ok(());
            }
            Some(Fault::SlowAnswer) => {
                forward(&request, upstream).await?;
                hung_up(&mut read).await;
                return Ok(());
            }
            Some(Fault::HalfUnprocessed) => half_unprocessed(request, upstream, shared).await?,
            Some(Fault::FirstEntryRefused) => first_entry_refused(request, upstream).await?,
            Some(Fault::Hangup) => return Ok(()),
            Some(Fault::Rejected { kind, message }) => error_response(400, kind, message),
        };
        write.write_all(&response).await?;
        write.flush().await?;
        shared.update(|state| *state.answered.entry(operation).or_default() += 1);
        if close {
            return Ok(());
        }
    }
    Ok(())
}

fn error_response(status: u16, kind: &str, message: &str) -> Vec<u8> {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let body = serde_json::json!({"__type": kind, "message": message}).to_string();
    Message {
        start: format!("HTTP/1.1 {status} {reason}"),
        headers: vec![
            ("content-type".into(), "application/x-amz-json-1.0".into()),
            (
                "x-amzn-requestid".into(),
                format!("FAULT{:016X}", fastrand::u64(..)),
            ),
        ],
        body: body.into_bytes(),
    }
    .to_bytes(&[])
}

/// Sends `request` to the server on a connection of its own and returns the answer,
/// re-framed for the client's kept-alive connection.
async fn forward(request: &Message, upstream: &str) -> io::Result<Vec<u8>> {
    Ok(forward_message(request, upstream).await?.to_bytes(&[]))
}

async fn forward_message(request: &Message, upstream: &str) -> io::Result<Message> {
    let mut server = TcpStream::connect(upstream).await?;
    server
        .write_all(&request.to_bytes(&[("connection", "close")]))
        .await?;
    let mut reader = BufReader::new(server);
    read_message(&mut reader, true)
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// Forwards `request` with `body`, or answers `empty` (content type, body) itself when
/// nothing is left to forward, and reads the answer's JSON; `Err` holds an answer other
/// than 200, to return as it is.
async fn forward_rest(
    mut request: Message,
    upstream: &str,
    body: Option<&Value>,
    empty: (&str, &[u8]),
) -> io::Result<Result<(Message, Value), Vec<u8>>> {
    let response = match body {
        None => Message {
            start: "HTTP/1.1 200 OK".into(),
            headers: vec![("content-type".into(), empty.0.into())],
            body: empty.1.to_vec(),
        },
        Some(body) => {
            request.body = body.to_string().into_bytes();
            forward_message(&request, upstream).await?
        }
    };
    if !response.start.contains(" 200") {
        return Ok(Err(response.to_bytes(&[])));
    }
    let answer = serde_json::from_slice(&response.body)
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok(Ok((response, answer)))
}

async fn half_unprocessed(
    request: Message,
    upstream: &str,
    shared: &Shared,
) -> io::Result<Vec<u8>> {
    let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(&request, upstream).await;
    };
    let mut held = serde_json::Map::new();
    let mut forwarded = 0;
    if let Some(tables) = body.get_mut("RequestItems").and_then(Value::as_object_mut) {
        for (table, writes) in tables.iter_mut() {
            if let Some(writes) = writes.as_array_mut() {
                let rest = writes.split_off(writes.len() / 2);
                forwarded += writes.len();
                if !rest.is_empty() {
                    held.insert(table.clone(), Value::Array(rest));
                }
            }
        }
        tables.retain(|_, writes| writes.as_array().is_some_and(|w| !w.is_empty()));
    }
    let held_count: usize = held
        .values()
        .map(|writes| writes.as_array().map_or(0, Vec::len))
        .sum();
    shared.update(|state| state.held_back_items += held_count as u32);
    let rest = (forwarded > 0).then_some(&body);
    let empty = (
        "application/x-amz-json-1.0",
        &br#"{"UnprocessedItems":{}}"#[..],
    );
    let (mut response, mut answer) = match forward_rest(request, upstream, rest, empty).await? {
        Ok(answered) => answered,
        Err(as_is) => return Ok(as_is),
    };
    let unprocessed = answer
        .as_object_mut()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?
        .entry("UnprocessedItems")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(unprocessed) = unprocessed.as_object_mut() {
        for (table, writes) in held {
            let entry = unprocessed
                .entry(table)
                .or_insert_with(|| Value::Array(Vec::new()));
            if let (Some(entry), Value::Array(writes)) = (entry.as_array_mut(), writes) {
                entry.extend(writes);
            }
        }
    }
    response.body = answer.to_string().into_bytes();
    Ok(response.to_bytes(&[]))
}

async fn first_entry_refused(request: Message, upstream: &str) -> io::Result<Vec<u8>> {
    let Ok(mut body) = serde_json::from_slice::<Value>(&request.body) else {
        return forward(&request, upstream).await;
    };
    let rest = match body.get_mut("Entries").and_then(Value::as_array_mut) {
        Some(entries) if !entries.is_empty() => {
            entries.remove(0);
            entries.len()
        }
        _ => return forward(&request, upstream).await,
    };
    let empty = (
        "application/x-amz-json-1.1",
        &br#"{"Entries":[],"FailedEntryCount":0}"#[..],
    );
    let forwarded = (rest > 0).then_some(&body);
    let (mut response, mut answer) = match forward_rest(request, upstream, forwarded, empty).await?
    {
        Ok(answered) => answered,
        Err(as_is) => return Ok(as_is),
    };
    let refused = serde_json::json!({
        "ErrorCode": "InternalFailure",
        "ErrorMessage": "refused by the fault proxy",
    });
    if let Some(entries) = answer.get_mut("Entries").and_then(Value::as_array_mut) {
        entries.insert(0, refused);
    }
    let failed = answer
        .get("FailedEntryCount")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    answer["FailedEntryCount"] = Value::from(failed + 1);
    response.body = answer.to_string().into_bytes();
    Ok(response.to_bytes(&[]))
}
