//! Tollgate: a reverse proxy that enforces OAuth 2.0 bearer tokens, and the authorization
//! server that issues them.
//!
//! # Layout
//!
//! | module | owns |
//! | --- | --- |
//! | [`config`] | `gateway.toml` → validated [`config::Config`] (errors as `FILE:LINE:COL`) |
//! | [`pattern`] | path normalisation and the compiled route/scope matcher |
//! | [`server`] | listeners, accept loop, graceful shutdown, [`server::run`] |
//! | [`gateway`] | the per-request pipeline on the public listener |
//! | [`auth`] | bearer extraction, token validation, scope check → `Permit` |
//! | [`proxy`] | upstream client, round-robin, header hygiene |
//! | [`oauth`] | the authorization server's endpoints and pages |
//! | [`outbound`] | outbound OAuth credentials: Tollgate as the client of upstreams (SPEC §8) |
//! | [`seal`] | sealing secrets kept in the store (ChaCha20-Poly1305) |
//! | [`registry`] | file and store scopes and disabled clients, compiled, followed on every node |
//! | [`store`] | token store: memory or Redis, with the per-node cache |
//! | [`token`] | token generation, hashing, records |
//! | [`secret`] | argon2id for client secrets and passwords |
//! | [`throttle`] | slowing down password and secret guessing (429) |
//! | [`admin`] | the admin listener: health, metrics, the admin API |
//! | [`metrics`] | Prometheus counters and histograms |
//! | [`cli`] | the ops commands (`tollgate clients|tokens|explain`), a client of the admin API |
//! | [`error`] | every error → status code, challenge and JSON body |
//! | `fuzzing` | hidden: what the `cargo fuzz` targets in `fuzz/` drive (fuzz/README.md) |

/// mimalloc for every binary that links Tollgate: measurably faster than the system allocator
/// on the request path (PERFORMANCE.md), and without glibc's per-chunk headers, which matters
/// for a cache of a million small records.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod admin;
pub mod auth;
pub mod cli;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
pub mod metrics;
pub mod oauth;
pub mod outbound;
pub mod pattern;
pub mod proxy;
pub mod registry;
pub mod seal;
pub mod secret;
pub mod server;
pub mod store;
pub mod throttle;
pub mod token;
