//! End-to-end: the authorization server across two gateway nodes sharing one Redis
//! (issue 3, "Done when"): pending requests, login sessions and codes live in the store,
//! so a user may hop between nodes mid-flow, and a revocation on one node holds on the
//! other within one second. The scenarios are in `two_nodes/authorization.rs`, shared with
//! the Redis Cluster tests.

mod common;
#[macro_use]
mod two_nodes;

use common::Store;

scenarios_on!(Store::redis().await =>
    a_flow_may_hop_between_nodes,
    code_replayed_on_the_other_node_revokes_everywhere,
    revocation_on_a_holds_on_b,
    refresh_retried_on_the_other_node_within_grace,
);
