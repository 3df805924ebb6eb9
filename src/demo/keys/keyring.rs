//! The set of keys a provider publishes, and which of them signs.

use std::sync::{Arc, PoisonError, RwLock};

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

use super::{KeyError, SigningKey};

/// The keys a provider publishes, one of which signs new tokens.
///
/// Old keys stay published after [`KeyRing::rotate`] so that tokens signed
/// before a rotation keep verifying until they are retired.
#[derive(Debug)]
pub struct KeyRing {
    state: RwLock<RingState>,
}

#[derive(Debug)]
struct RingState {
    published: Vec<Arc<SigningKey>>,
    active: Arc<SigningKey>,
}

impl KeyRing {
    /// A ring publishing just `key`, which is active.
    pub fn new(key: SigningKey) -> Self {
        let key = Arc::new(key);
        Self {
            state: RwLock::new(RingState {
                published: vec![Arc::clone(&key)],
                active: key,
            }),
        }
    }

    /// A ring with one freshly generated key.
    pub fn generate(alg: Algorithm) -> Result<Self, KeyError> {
        Ok(Self::new(SigningKey::generate(alg)?))
    }

    /// The key that signs new tokens.
    pub fn active(&self) -> Arc<SigningKey> {
        Arc::clone(&self.read().active)
    }

    /// All published keys, oldest first.
    pub fn keys(&self) -> Vec<Arc<SigningKey>> {
        self.read().published.clone()
    }

    /// The JWKS document: `{"keys": [...]}` with every published key.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self
            .read()
            .published
            .iter()
            .map(|k| k.public_jwk())
            .collect();
        json!({ "keys": keys })
    }

    /// Generates a key with the active key's algorithm, publishes it and
    /// makes it active. Earlier keys stay published.
    pub fn rotate(&self) -> Result<Arc<SigningKey>, KeyError> {
        let alg = self.active().alg();
        // Generate outside the lock: RSA key generation takes a while.
        let key = SigningKey::generate(alg)?;
        Ok(self.add(key, true))
    }

    /// Publishes `key` (once: a key with the same kid is not added twice)
    /// and, if `activate`, makes it the signing key.
    pub fn add(&self, key: SigningKey, activate: bool) -> Arc<SigningKey> {
        let mut state = self.write();
        let key = match state.published.iter().find(|k| k.kid() == key.kid()) {
            Some(existing) => Arc::clone(existing),
            None => {
                let key = Arc::new(key);
                state.published.push(Arc::clone(&key));
                key
            }
        };
        if activate {
            state.active = Arc::clone(&key);
        }
        key
    }

    /// Stops publishing the key with `kid`. The active key cannot be
    /// retired; returns whether a key was removed.
    pub fn retire(&self, kid: &str) -> bool {
        let mut state = self.write();
        if state.active.kid() == kid {
            return false;
        }
        let before = state.published.len();
        state.published.retain(|k| k.kid() != kid);
        state.published.len() != before
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, RingState> {
        // The state is replaced wholesale under the lock, so a panic
        // elsewhere cannot leave it half-updated; poisoning is safe to ignore.
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, RingState> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_rotation_keeps_old_keys_published() {
        let ring = KeyRing::generate(Algorithm::ES256).unwrap();
        let first = ring.active();
        let second = ring.rotate().unwrap();
        assert_ne!(first.kid(), second.kid());
        assert_eq!(ring.active().kid(), second.kid());
        assert_eq!(ring.keys().len(), 2);
        assert!(!ring.retire(second.kid()));
        ring.add((*first).clone(), false);
        assert_eq!(ring.keys().len(), 2, "same kid is not published twice");
        assert!(ring.retire(first.kid()));
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 1);
    }
}
