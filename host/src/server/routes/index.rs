//! An index over the routes' matches, built once per route table: it finds
//! the first matching route in config order in time that grows with the
//! path, not with the number of routes.
//!
//! A `path_prefix` route matches a path whose `/`-separated segments start
//! with the prefix's segments (`/v1` matches `/v1` and `/v1/x`, not `/v1x`),
//! so the prefixes live in a trie keyed by segment. A `grpc_service` route
//! matches `/{service}/{method}` with a non-empty method holding no `/`, so
//! the services are a map keyed by `/{service}`, looked up with the path up
//! to its last `/`. Every node keeps the lowest route index ending there;
//! the answer is the lowest index over all hits, which is the first match.

use std::collections::HashMap;

use crate::config::RouteMatch;

/// The routes' matches, indexed.
#[derive(Debug, Clone, Default)]
pub(super) struct RouteIndex {
    /// Lowest index of a route matching every path (`path_prefix: /`).
    match_all: Option<usize>,
    /// The prefix trie; node 0 is the root (the empty segment list).
    nodes: Vec<Node>,
    /// `/{service}` of each gRPC route, with the lowest index for it.
    services: HashMap<Box<str>, usize>,
}

/// One node of the prefix trie (kept in a flat arena: no recursion to
/// build, clone or drop however deep a configured prefix is).
#[derive(Debug, Clone, Default)]
struct Node {
    /// Lowest index of a route whose prefix ends here.
    route: Option<usize>,
    /// Next segment → node.
    children: HashMap<Box<str>, usize>,
}

impl RouteIndex {
    /// Indexes `matches`, in route order.
    pub(super) fn new<'a>(matches: impl IntoIterator<Item = &'a RouteMatch>) -> Self {
        let mut index = Self { nodes: vec![Node::default()], ..Self::default() };
        // Indices arrive in increasing order, so keeping the first one
        // stored at a key keeps the lowest.
        for (i, m) in matches.into_iter().enumerate() {
            match m {
                RouteMatch::GrpcService(service) => {
                    index.services.entry(format!("/{service}").into()).or_insert(i);
                }
                RouteMatch::PathPrefix(prefix) => {
                    let prefix = prefix.trim_end_matches('/');
                    if prefix.is_empty() {
                        index.match_all.get_or_insert(i);
                        continue;
                    }
                    let mut at = 0;
                    for segment in prefix.split('/') {
                        at = match index.nodes[at].children.get(segment) {
                            Some(&next) => next,
                            None => {
                                let next = index.nodes.len();
                                index.nodes.push(Node::default());
                                index.nodes[at].children.insert(segment.into(), next);
                                next
                            }
                        };
                    }
                    index.nodes[at].route.get_or_insert(i);
                }
            }
        }
        index
    }

    /// The index of the first route matching `path`.
    pub(super) fn find(&self, path: &str) -> Option<usize> {
        let mut best = self.match_all;
        let mut at = 0;
        for segment in path.split('/') {
            let Some(&next) = self.nodes[at].children.get(segment) else { break };
            at = next;
            best = lowest(best, self.nodes[at].route);
        }
        if let Some((head, method)) = path.rsplit_once('/')
            && !method.is_empty()
        {
            best = lowest(best, self.services.get(head).copied());
        }
        best
    }
}

fn lowest(a: Option<usize>, b: Option<usize>) -> Option<usize> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
