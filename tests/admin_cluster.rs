//! End-to-end: the admin API on two gateway nodes sharing one Redis (SPEC §7: clients live
//! in the store; a revocation takes effect on every node within one second). The scenarios
//! are in `two_nodes/admin.rs`, shared with the Redis Cluster tests.

mod common;
#[macro_use]
mod two_nodes;

use common::Store;

scenarios_on!(Store::redis().await =>
    clients_are_shared_by_every_node,
    a_token_deleted_on_one_node_is_refused_by_another_within_a_second,
);
