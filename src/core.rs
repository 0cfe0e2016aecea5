//! The core: the model, secrets, limiters, the index and the verifier. Nothing in
//! here does I/O.

pub mod clock;
pub mod histogram;
pub mod index;
pub mod jwt;
pub mod limits;
pub mod model;
pub mod perms;
pub mod readmap;
pub mod secret;
pub mod verify;
