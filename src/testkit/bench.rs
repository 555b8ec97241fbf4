//! What the benches measure with: their history points, and what an invocation cost as
//! DynamoDB would bill it, counted by the in-memory store's ledger or by the counting
//! proxy (`scripts/counting_proxy.py`) in front of a local server, behind one [`Meter`].

use std::io::{Read, Write};

use crate::store::memory::MemoryStore;

/// The record counts of history a bench measures at: `variable`'s comma-separated list,
/// else `default`.
pub fn points(variable: &str, default: &[usize]) -> Vec<usize> {
    std::env::var(variable)
        .ok()
        .map(|points| {
            points
                .split(',')
                .filter_map(|point| point.trim().parse().ok())
                .collect()
        })
        .unwrap_or_else(|| default.to_vec())
}

/// What was sent since a meter's reset, as DynamoDB would bill it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cost {
    pub requests: u64,
    pub read_units: f64,
    pub write_units: u64,
    pub items_read: u64,
}

/// Where the costs are counted.
pub trait Meter {
    fn reset(&self);
    fn cost(&self) -> Cost;
}

impl Meter for MemoryStore {
    fn reset(&self) {
        self.reset_ledger();
    }

    fn cost(&self) -> Cost {
        let ledger = self.ledger();
        Cost {
            requests: ledger.total_requests(),
            read_units: ledger.read_units,
            write_units: ledger.write_units,
            items_read: ledger.items_read,
        }
    }
}

/// The counting proxy at `127.0.0.1:<port>`: `/reset` clears its totals, `/stats`
/// returns them per operation.
pub struct Proxy {
    pub port: u16,
}

impl Proxy {
    fn call(&self, method: &str, path: &str) -> String {
        let mut stream =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("the counting proxy");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("answer");
        answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.to_owned())
            .unwrap_or_default()
    }

    /// The totals since the last reset, summed over the operations: each of `fields`
    /// (`requests`, `items`, `read_units`, `write_units`, `index_write_units`).
    pub fn totals<const N: usize>(&self, fields: [&str; N]) -> [f64; N] {
        let stats: serde_json::Value =
            serde_json::from_str(&self.call("GET", "/stats")).unwrap_or_default();
        let mut sums = [0.0; N];
        for totals in stats.as_object().into_iter().flat_map(|map| map.values()) {
            for (sum, field) in sums.iter_mut().zip(fields) {
                *sum += totals[field].as_f64().unwrap_or(0.0);
            }
        }
        sums
    }
}

impl Meter for Proxy {
    fn reset(&self) {
        self.call("POST", "/reset");
    }

    fn cost(&self) -> Cost {
        let [requests, items_read, read_units, write_units] =
            self.totals(["requests", "items", "read_units", "write_units"]);
        Cost {
            requests: requests as u64,
            read_units,
            write_units: write_units as u64,
            items_read: items_read as u64,
        }
    }
}
