use argon2::password_hash::{rand_core::OsRng, Output, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::Rng;

use crate::{AuthError, MAX_PASSWORD_LEN};

/// Hashes a password with argon2id (the crate's default parameters: 19 MiB, 2 passes, as OWASP
/// recommends), giving a PHC string that records its own parameters.
pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Err(AuthError::PasswordTooLong);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

/// Checks a password against a stored PHC string. A malformed stored hash never matches.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Threads that run argon2 verifications for the server. argon2id allocates 19 MiB per check; glibc keeps
/// such memory in the arena of the thread that freed it, so checks spread over many blocking-pool threads
/// left hundreds of MiB resident. Two fixed threads bound that to two arenas (and two cores' worth of
/// CPU, which is all this machine class has anyway).
const VERIFY_THREADS: usize = 2;

/// Password checks that may wait for those threads. At about 16 ms each that is a second of work: a
/// flood of guesses beyond it is refused at once ([`Busy`]) instead of queueing without bound, and no
/// caller holds a thread while it waits, so file transfers never starve behind a password flood.
pub const VERIFY_QUEUE: usize = 128;

/// The password-check queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

type VerifyJob = (String, String, tokio::sync::oneshot::Sender<bool>);

fn verify_queue() -> Option<&'static std::sync::mpsc::SyncSender<VerifyJob>> {
    static QUEUE: std::sync::OnceLock<Option<std::sync::mpsc::SyncSender<VerifyJob>>> = std::sync::OnceLock::new();
    QUEUE
        .get_or_init(|| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
            let rx = std::sync::Arc::new(std::sync::Mutex::new(rx));
            for i in 0..VERIFY_THREADS {
                let rx = rx.clone();
                let spawned = std::thread::Builder::new().name(format!("ferry-argon2-{i}")).spawn(move || {
                    // Allocated once and reused: see `verify_with_memory`.
                    let mut blocks: Vec<Block> = Vec::new();
                    loop {
                        let job = match rx.lock() {
                            Ok(rx) => rx.recv(),
                            Err(_) => return,
                        };
                        let Ok((password, hash, reply)) = job else { return };
                        // Nobody waits any more (the connection closed): skip the work.
                        if reply.is_closed() {
                            continue;
                        }
                        let _ = reply.send(verify_with_memory(&mut blocks, &password, &hash));
                    }
                });
                if spawned.is_err() {
                    return None;
                }
            }
            Some(tx)
        })
        .as_ref()
}

/// Queues a check of `password` against `phc` on the argon2 threads; the receiver gives the answer.
/// `Err(Busy)` when [`VERIFY_QUEUE`] checks are already waiting.
pub fn verify_password_queued(password: &str, phc: &str) -> Result<tokio::sync::oneshot::Receiver<bool>, Busy> {
    let (reply_tx, reply_rx) = tokio::sync::oneshot::channel();
    let Some(queue) = verify_queue() else {
        // No worker threads: check here (only in a process that cannot start threads at all).
        let _ = reply_tx.send(verify_password(password, phc));
        return Ok(reply_rx);
    };
    match queue.try_send((password.to_string(), phc.to_string(), reply_tx)) {
        Ok(()) => Ok(reply_rx),
        Err(_) => Err(Busy),
    }
}

/// Largest argon2 memory we agree to use for one verification (a stored hash names its own cost).
const MAX_VERIFY_BLOCKS: usize = 256 * 1024; // 256 MiB of 1 KiB blocks

/// [`verify_password`] with argon2's working memory supplied by the caller and kept between calls.
/// Freeing a 19 MiB block after every login makes glibc raise its mmap threshold to that size, after which
/// every allocation below it is served from (and kept in) the heap arenas: measured, 100 FTPS password
/// logins left the server 158 MiB larger. A block that is never freed leaves the threshold alone.
pub(crate) fn verify_with_memory(blocks: &mut Vec<Block>, password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let need = params.block_count();
    if need > MAX_VERIFY_BLOCKS {
        return false;
    }
    if blocks.len() != need {
        *blocks = vec![Block::default(); need];
    }
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else { return false };
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut blocks[..]).is_err() {
        return false;
    }
    // `Output`'s equality is constant-time.
    Output::new(&out).map(|o| o == expected).unwrap_or(false)
}

/// [`verify_password`] on one of the dedicated argon2 threads; blocks the caller until it is done (or
/// checks here when the queue is full: for callers outside the server, such as the command line).
pub fn verify_password_bounded(password: &str, phc: &str) -> bool {
    match verify_password_queued(password, phc) {
        Ok(rx) => rx.blocking_recv().unwrap_or(false),
        Err(Busy) => verify_password(password, phc),
    }
}

/// A random password of 20 characters from an alphabet without look-alikes (no 0/O, 1/l/I): about 115
/// bits, easy to read out loud.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..20).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_and_verify() {
        let h = hash_password("s3cret").expect("hash");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("s3cret", &h));
        assert!(!verify_password("s3cret ", &h));
        assert!(!verify_password("s3cret", "not a hash"));
    }

    #[test]
    fn verification_with_reused_memory() {
        let h = hash_password("s3cret").expect("hash");
        let mut blocks = Vec::new();
        assert!(verify_with_memory(&mut blocks, "s3cret", &h));
        assert!(!verify_with_memory(&mut blocks, "s3cret!", &h));
        assert!(verify_with_memory(&mut blocks, "s3cret", &h), "the same memory serves again");
        assert!(!verify_with_memory(&mut blocks, "s3cret", "$argon2id$v=19$m=19456,t=2,p=1$bad"));
    }

    #[test]
    fn bounded_verification_agrees() {
        let h = hash_password("pw").expect("hash");
        assert!(verify_password_bounded("pw", &h));
        assert!(!verify_password_bounded("wrong", &h));
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let h = hash_password("pw").expect("hash");
        let mut waiting = Vec::new();
        let mut busy = 0;
        for _ in 0..(VERIFY_QUEUE + VERIFY_THREADS + 50) {
            match verify_password_queued("wrong", &h) {
                Ok(rx) => waiting.push(rx),
                Err(Busy) => busy += 1,
            }
        }
        assert!(busy > 0, "the queue never filled");
        assert!(waiting.len() <= VERIFY_QUEUE + VERIFY_THREADS + 1);
        for rx in waiting {
            assert!(!rx.await.expect("answered"));
        }
        assert!(verify_password_queued("pw", &h).expect("room again").await.expect("answered"));
    }

    #[test]
    fn passwords_up_to_the_limit_and_no_longer() {
        let longest = "p".repeat(crate::MAX_PASSWORD_LEN);
        let h = hash_password(&longest).expect("a password of exactly the limit");
        assert!(verify_password(&longest, &h));
        assert!(verify_with_memory(&mut Vec::new(), &longest, &h));
        let over = "p".repeat(crate::MAX_PASSWORD_LEN + 1);
        assert!(matches!(hash_password(&over), Err(AuthError::PasswordTooLong)));
        // A hash of the long one (as if stored by hand) never matches a password over the limit.
        let mut bare = Vec::new();
        let long_hash = Argon2::default()
            .hash_password(over.as_bytes(), &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string();
        assert!(!verify_password(&over, &long_hash));
        assert!(!verify_with_memory(&mut bare, &over, &long_hash));
    }

    #[test]
    fn a_stored_hash_that_asks_for_too_much_memory_is_refused_unchecked() {
        // m = 256 MiB is the most a check may use; one step more (argon2 rounds m down to a multiple of 4 blocks
        // per lane) and the hash is refused without running it.
        let salt = SaltString::generate(&mut OsRng);
        let at = |m_kib: u32| {
            Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(m_kib, 1, 1, None).expect("params"))
                .hash_password(b"pw", &salt)
                .expect("hash")
                .to_string()
        };
        let mut blocks = Vec::new();
        assert!(verify_with_memory(&mut blocks, "pw", &at(MAX_VERIFY_BLOCKS as u32)), "exactly the limit");
        assert_eq!(blocks.len(), MAX_VERIFY_BLOCKS);
        assert!(!verify_with_memory(&mut blocks, "pw", &at(MAX_VERIFY_BLOCKS as u32 + 4)), "over the limit");
    }

    #[test]
    fn generated_passwords_differ() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }
}
